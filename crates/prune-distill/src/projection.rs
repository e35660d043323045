//! `Projection`: a learned affine map `d_s → d_t` (a `Linear` with bias, PyTorch layout)
//! applied to a student hidden state before it is compared with a teacher hidden state,
//! trained with the student by its own AdamW state (it is not part of `BertParams`, so the
//! student's checkpoints and surgery never see it).

use crate::error::Result;
use crate::lstsq::AffineFit;
use prune_tensor::rng::Rng;
use prune_tensor::{AdamW, Backend, Tensor};
use prune_train::AdamWConfig;
use prune_transformer::Linear;

/// A projection with its gradient accumulator and AdamW moments.
#[derive(Clone, Debug)]
pub struct Projection<T> {
    /// The map: weight `[d_t, d_s]`, bias `[d_t]`.
    pub linear: Linear<T>,
    /// Gradients accumulated since the last update, mirroring `linear`.
    grad: Linear<T>,
    /// First moments.
    m: Linear<T>,
    /// Second moments.
    v: Linear<T>,
    /// Updates taken (AdamW bias correction).
    steps: u64,
}

/// A `Linear` of zeros shaped like `l`.
fn zeros_like<B: Backend>(b: &B, l: &Linear<B::Tensor>) -> Result<Linear<B::Tensor>> {
    Ok(Linear {
        weight: b.zeros(b.shape(&l.weight))?,
        bias: b.zeros(b.shape(&l.bias))?,
    })
}

impl<T: Clone> Projection<T> {
    /// A projection starting at `linear`, with zero moments.
    pub fn new<B: Backend<Tensor = T>>(b: &B, linear: Linear<T>) -> Result<Self> {
        let zeros = zeros_like(b, &linear)?;
        Ok(Projection {
            linear,
            grad: zeros.clone(),
            m: zeros.clone(),
            v: zeros,
            steps: 0,
        })
    }

    /// PyTorch's `nn.Linear` initialisation: weight and bias uniform in `±1/sqrt(d_in)`.
    pub fn random<B: Backend<Tensor = T>>(
        b: &B,
        d_in: usize,
        d_out: usize,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = Rng::new(seed);
        let bound = 1.0 / (d_in.max(1) as f64).sqrt();
        let mut draw =
            |shape: &[usize]| Tensor::from_fn(shape.to_vec(), |_| rng.range(-bound, bound) as f32);
        let weight = b.upload(&draw(&[d_out, d_in]))?;
        let bias = b.upload(&draw(&[d_out]))?;
        Self::new(b, Linear { weight, bias })
    }

    /// A projection starting at a least-squares fit.
    pub fn from_fit<B: Backend<Tensor = T>>(b: &B, fit: &AffineFit) -> Result<Self> {
        let linear = Linear {
            weight: b.upload(&fit.weight)?,
            bias: b.upload(&fit.bias)?,
        };
        Self::new(b, linear)
    }

    /// Input width d_s.
    pub fn d_in<B: Backend<Tensor = T>>(&self, b: &B) -> usize {
        b.shape(&self.linear.weight).last()
    }

    /// Output width d_t.
    pub fn d_out<B: Backend<Tensor = T>>(&self, b: &B) -> usize {
        b.shape(&self.linear.bias).last()
    }

    /// Updates taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// `x · Wᵀ + b`; `x` `[N, d_s]`, output `[N, d_t]`.
    pub fn forward<B: Backend<Tensor = T>>(&self, b: &B, x: &T) -> Result<T> {
        Ok(self.linear.forward(b, x, None)?)
    }

    /// Backward given the forward input `x` `[N, d_s]` and `dy` `[N, d_t]`: accumulates the
    /// parameter gradients (`+=`) and returns `dx` `[N, d_s]`.
    pub fn backward<B: Backend<Tensor = T>>(&mut self, b: &B, x: &T, dy: &T) -> Result<T> {
        Ok(self.linear.backward(b, x, dy, None, &mut self.grad)?)
    }

    /// The gradients accumulated since the last update.
    pub fn grad(&self) -> &Linear<T> {
        &self.grad
    }

    /// Squared L2 norm of the accumulated gradients.
    pub fn grad_sq_norm<B: Backend<Tensor = T>>(&self, b: &B) -> Result<f64> {
        Ok(b.sum_squares(&self.grad.weight)? + b.sum_squares(&self.grad.bias)?)
    }

    /// One AdamW update at `lr` with the accumulated gradients multiplied by `grad_scale`
    /// (clipping), then clears them. The bias is not decayed.
    pub fn step<B: Backend<Tensor = T>>(
        &mut self,
        b: &B,
        lr: f64,
        config: &AdamWConfig,
        grad_scale: f64,
    ) -> Result<()> {
        self.steps += 1;
        let hp = |weight_decay| AdamW {
            lr,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            weight_decay,
            step: self.steps,
        };
        if grad_scale != 1.0 {
            b.scale_assign(&mut self.grad.weight, grad_scale)?;
            b.scale_assign(&mut self.grad.bias, grad_scale)?;
        }
        b.adamw_step(
            &mut self.linear.weight,
            &self.grad.weight,
            &mut self.m.weight,
            &mut self.v.weight,
            &hp(config.weight_decay),
            None,
        )?;
        b.adamw_step(
            &mut self.linear.bias,
            &self.grad.bias,
            &mut self.m.bias,
            &mut self.v.bias,
            &hp(0.0),
            None,
        )?;
        self.grad = zeros_like(b, &self.linear)?;
        Ok(())
    }

    /// Keeps the input channels `keep` (ascending) of the weight, its gradient and its
    /// moments: what hidden-width surgery on the student does to the projection.
    pub fn keep_inputs<B: Backend<Tensor = T>>(&mut self, b: &B, keep: &[usize]) -> Result<()> {
        let cut = |t: &T| prune_speedup::slice::keep_along(b, t, 1, keep);
        let (w, g, m, v) = (
            cut(&self.linear.weight)?,
            cut(&self.grad.weight)?,
            cut(&self.m.weight)?,
            cut(&self.v.weight)?,
        );
        self.linear.weight = w;
        self.grad.weight = g;
        self.m.weight = m;
        self.v.weight = v;
        Ok(())
    }

    /// The parameters and moments on the host, named `{prefix}{weight,bias}` and
    /// `{prefix}adam_{m,v}.{weight,bias}`, for checkpoints.
    pub fn to_host<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        prefix: &str,
    ) -> Result<Vec<(String, Tensor<f32>)>> {
        let mut out = Vec::new();
        for (what, l) in [
            ("", &self.linear),
            ("adam_m.", &self.m),
            ("adam_v.", &self.v),
        ] {
            out.push((format!("{prefix}{what}weight"), b.download(&l.weight)?));
            out.push((format!("{prefix}{what}bias"), b.download(&l.bias)?));
        }
        Ok(out)
    }

    /// A projection read back from host tensors written by [`Projection::to_host`]
    /// (`get` looks a name up), with `steps` updates taken.
    pub fn from_host<B: Backend<Tensor = T>>(
        b: &B,
        prefix: &str,
        steps: u64,
        mut get: impl FnMut(&str) -> Result<Tensor<f32>>,
    ) -> Result<Self> {
        let mut load = |what: &str| -> Result<Linear<T>> {
            Ok(Linear {
                weight: b.upload(&get(&format!("{prefix}{what}weight"))?)?,
                bias: b.upload(&get(&format!("{prefix}{what}bias"))?)?,
            })
        };
        let linear = load("")?;
        let (m, v) = (load("adam_m.")?, load("adam_v.")?);
        let grad = zeros_like(b, &linear)?;
        Ok(Projection {
            linear,
            grad,
            m,
            v,
            steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prune_tensor::CpuBackend;
    use prune_tensor::gradcheck::{GradCheck, dot, uniform};

    #[test]
    fn gradients_of_input_weight_and_bias_match_central_differences() {
        let b = CpuBackend::<f64>::new();
        let mut rng = Rng::new(5);
        let mut p = Projection::random(&b, 3, 4, 9).unwrap();
        let x = uniform([5, 3], -1.0, 1.0, &mut rng);
        let r = uniform([5, 4], -1.0, 1.0, &mut rng);
        let dx = p.backward(&b, &x, &r).unwrap();
        let check = GradCheck::default();
        let linear = p.linear.clone();
        let out =
            |l: &Linear<Tensor<f64>>, x: &Tensor<f64>| dot(&l.forward(&b, x, None).unwrap(), &r);
        check.run(&x, &dx, |x| out(&linear, x), &mut rng).unwrap();
        let gw = p.grad().weight.clone();
        check
            .run(
                &linear.weight,
                &gw,
                |w| {
                    let l = Linear {
                        weight: w.clone(),
                        bias: linear.bias.clone(),
                    };
                    out(&l, &x)
                },
                &mut rng,
            )
            .unwrap();
        let gb = p.grad().bias.clone();
        check
            .run(
                &linear.bias,
                &gb,
                |bias| {
                    let l = Linear {
                        weight: linear.weight.clone(),
                        bias: bias.clone(),
                    };
                    out(&l, &x)
                },
                &mut rng,
            )
            .unwrap();
    }

    #[test]
    fn steps_clear_gradients_and_slicing_keeps_columns() {
        let b = CpuBackend::<f32>::new();
        let mut p = Projection::random(&b, 4, 2, 1).unwrap();
        let bound = 0.5f32;
        assert!(p.linear.weight.data().iter().all(|v| v.abs() <= bound));
        let x = Tensor::from_fn([3, 4], |i| i as f32 * 0.1);
        let dy = Tensor::full([3, 2], 1.0f32);
        p.backward(&b, &x, &dy).unwrap();
        assert!(p.grad_sq_norm(&b).unwrap() > 0.0);
        let before = p.linear.weight.clone();
        p.step(&b, 1e-2, &AdamWConfig::default(), 1.0).unwrap();
        assert_eq!(p.steps(), 1);
        assert_eq!(p.grad_sq_norm(&b).unwrap(), 0.0);
        assert!(p.linear.weight.max_abs_diff(&before) > 1e-3);
        let w = p.linear.weight.clone();
        p.keep_inputs(&b, &[0, 3]).unwrap();
        assert_eq!(p.d_in(&b), 2);
        assert_eq!(p.d_out(&b), 2);
        assert_eq!(
            p.linear.weight.data(),
            &[w.data()[0], w.data()[3], w.data()[4], w.data()[7]]
        );
        let host = p.to_host(&b, "p.").unwrap();
        let map: std::collections::BTreeMap<_, _> = host.into_iter().collect();
        let back = Projection::from_host(&b, "p.", 1, |n| Ok(map[n].clone())).unwrap();
        assert_eq!(back.linear, p.linear);
        assert_eq!(back.steps(), 1);
    }
}
