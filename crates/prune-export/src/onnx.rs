//! A BERT sequence classifier as an ONNX graph (opset 17), with the per-layer heads, FFN
//! widths and hidden width the checkpoint has, and its weights as initializers.
//!
//! Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64, `[batch, sequence]`),
//! output `logits` (`[batch, labels]`). The graph follows the operator pattern of a
//! `torch.onnx` export of transformers' `BertForSequenceClassification`, the pattern ONNX
//! Runtime's graph optimizer recognises: Q/K/V as MatMul + Add, Reshape to
//! `[0, 0, heads, head dim]` and Transpose, scaled scores plus the additive mask
//! `(1 - mask) · f32::MIN`, Softmax, the attention output plus the residual into
//! LayerNormalization, and the FFN's activation (GELU in its erf form, as transformers'
//! `gelu`; its tanh form for `gelu_new`; ReLU). ELECTRA's embeddings projection is one
//! more MatMul + Add, and its head's GELU the erf form. A layer without heads (or FFN neurons)
//! keeps only that sub-layer's output bias, as the model computes it. The last layer's
//! attention output, FFN and LayerNorms run on each sequence's first token alone, the only
//! row the head reads (as prune's own inference does).

use crate::error::{ExportError, Result};
use crate::graph::{Attr, Axis, Graph};
use crate::proto::DataType;
use prune_tensor::{Activation, Tensor};
use prune_transformer::{BertConfig, Family, HeadActivation, HostParams, LayerNorm, Linear};

/// The additive mask value of padded keys, as transformers uses for f32.
const MASK_VALUE: f32 = f32::MIN;

/// `W` of a `[O, I]` linear layer as the `[I, O]` right operand of a MatMul.
fn transposed(w: &Tensor<f32>) -> (Vec<usize>, Vec<f32>) {
    let (rows, cols) = (w.dims()[0], w.dims()[1]);
    let data = w.data();
    let mut t = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = data[r * cols + c];
        }
    }
    (vec![cols, rows], t)
}

/// The graph being written, with the model's names for its weights.
struct Writer<'a> {
    g: Graph,
    config: &'a BertConfig,
}

impl Writer<'_> {
    /// `weight` of parameter `name`, as stored.
    fn weight(&mut self, name: &str, t: &Tensor<f32>) -> String {
        self.g.weight(name, t.dims(), t.data())
    }

    /// `x · Wᵀ + b` for a `[.., I]` input (MatMul + Add, as torch exports a Linear).
    fn linear(&mut self, name: &str, x: &str, l: &Linear<Tensor<f32>>) -> String {
        let (dims, data) = transposed(&l.weight);
        let w = self.g.weight(&format!("{name}.weight"), &dims, &data);
        let b = self.weight(&format!("{name}.bias"), &l.bias);
        let product = self.g.op("MatMul", &[x, &w], &[]);
        self.g.op("Add", &[&product, &b], &[])
    }

    /// `x · Wᵀ + b` for a `[B, I]` input (Gemm with a transposed `B`).
    fn gemm(&mut self, name: &str, x: &str, l: &Linear<Tensor<f32>>) -> String {
        let w = self.weight(&format!("{name}.weight"), &l.weight);
        let b = self.weight(&format!("{name}.bias"), &l.bias);
        self.g.op("Gemm", &[x, &w, &b], &[Attr::Int("transB", 1)])
    }

    /// LayerNormalization over the last axis.
    fn norm(&mut self, name: &str, x: &str, n: &LayerNorm<Tensor<f32>>) -> String {
        let gamma = self.weight(&format!("{name}.weight"), &n.weight);
        let beta = self.weight(&format!("{name}.bias"), &n.bias);
        let eps = self.config.layer_norm_eps as f32;
        self.g.op(
            "LayerNormalization",
            &[x, &gamma, &beta],
            &[Attr::Int("axis", -1), Attr::Float("epsilon", eps)],
        )
    }

    /// The FFN's activation: GELU's erf form, its tanh form or ReLU.
    fn activation(&mut self, x: &str) -> String {
        match self.config.activation {
            Activation::Gelu => self.gelu(x),
            Activation::GeluTanh => self.gelu_tanh(x),
            Activation::Relu => self.g.op("Relu", &[x], &[]),
        }
    }

    /// GELU's tanh form as torch exports transformers' `gelu_new`:
    /// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
    fn gelu_tanh(&mut self, x: &str) -> String {
        let (k, a) = (self.g.scalar(0.797_884_6), self.g.scalar(0.044_715));
        let (one, half, three) = (self.g.scalar(1.0), self.g.scalar(0.5), self.g.scalar(3.0));
        let cube = self.g.op("Pow", &[x, &three], &[]);
        let cube = self.g.op("Mul", &[&cube, &a], &[]);
        let inner = self.g.op("Add", &[x, &cube], &[]);
        let inner = self.g.op("Mul", &[&inner, &k], &[]);
        let t = self.g.op("Tanh", &[&inner], &[]);
        let plus = self.g.op("Add", &[&t, &one], &[]);
        let times = self.g.op("Mul", &[x, &plus], &[]);
        self.g.op("Mul", &[&times, &half], &[])
    }

    /// GELU in the erf form torch exports: `x · (1 + erf(x / √2)) · 0.5`.
    fn gelu(&mut self, x: &str) -> String {
        let sqrt2 = self.g.scalar(std::f32::consts::SQRT_2);
        let (one, half) = (self.g.scalar(1.0), self.g.scalar(0.5));
        let scaled = self.g.op("Div", &[x, &sqrt2], &[]);
        let erf = self.g.op("Erf", &[&scaled], &[]);
        let plus = self.g.op("Add", &[&erf, &one], &[]);
        let times = self.g.op("Mul", &[x, &plus], &[]);
        self.g.op("Mul", &[&times, &half], &[])
    }

    /// `[B, T, H·D]` → `[B, H, T, D]` (or `[B, H, D, T]` for keys, `perm` 0, 2, 3, 1).
    fn split_heads(&mut self, x: &str, heads: usize, perm: [i64; 4]) -> String {
        let d = self.config.head_dim() as i64;
        let shape = self.g.ints(&[4], &[0, 0, heads as i64, d]);
        let r = self.g.op("Reshape", &[x, &shape], &[]);
        self.g
            .op("Transpose", &[&r], &[Attr::Ints("perm", perm.to_vec())])
    }

    /// Self-attention of layer `l` on `x`, plus the residual; `mask` is the additive mask.
    /// With `first_only` (the last layer: the head reads its first token alone), the
    /// output projection, the residual and everything after them run on each sequence's
    /// first token, `[batch, 1, C]`.
    fn attention(
        &mut self,
        l: usize,
        x: &str,
        mask: &str,
        p: &prune_transformer::Layer<Tensor<f32>>,
        first_only: bool,
    ) -> String {
        let name = format!("bert.encoder.layer.{l}.attention");
        let heads = self.config.heads(l);
        let out = if heads == 0 {
            // No heads: the output projection has no inputs and leaves its bias.
            self.weight(
                &format!("{name}.output.dense.bias"),
                &p.attention_output.bias,
            )
        } else {
            let q = self.linear(&format!("{name}.self.query"), x, &p.query);
            let k = self.linear(&format!("{name}.self.key"), x, &p.key);
            let v = self.linear(&format!("{name}.self.value"), x, &p.value);
            let q = self.split_heads(&q, heads, [0, 2, 1, 3]);
            let k = self.split_heads(&k, heads, [0, 2, 3, 1]);
            let v = self.split_heads(&v, heads, [0, 2, 1, 3]);
            let scores = self.g.op("MatMul", &[&q, &k], &[]);
            let root = self.g.scalar((self.config.head_dim() as f32).sqrt());
            let scaled = self.g.op("Div", &[&scores, &root], &[]);
            let masked = self.g.op("Add", &[&scaled, mask], &[]);
            let probs = self.g.op("Softmax", &[&masked], &[Attr::Int("axis", -1)]);
            let context = self.g.op("MatMul", &[&probs, &v], &[]);
            let merged = self.g.op(
                "Transpose",
                &[&context],
                &[Attr::Ints("perm", vec![0, 2, 1, 3])],
            );
            let width = (heads * self.config.head_dim()) as i64;
            let shape = self.g.ints(&[3], &[0, 0, width]);
            let flat = self.g.op("Reshape", &[&merged, &shape], &[]);
            let flat = if first_only {
                self.first_token(&flat)
            } else {
                flat
            };
            self.linear(&format!("{name}.output.dense"), &flat, &p.attention_output)
        };
        let x = if first_only {
            self.first_token(x)
        } else {
            x.to_string()
        };
        let sum = self.g.op("Add", &[&out, &x], &[]);
        self.norm(&format!("{name}.output.LayerNorm"), &sum, &p.attention_norm)
    }

    /// Each sequence's first token of `x` `[batch, sequence, ·]`, `[batch, 1, ·]`.
    fn first_token(&mut self, x: &str) -> String {
        let first = self.g.ints(&[1], &[0]);
        self.g.op("Gather", &[x, &first], &[Attr::Int("axis", 1)])
    }

    /// The FFN of layer `l` on `x`, plus the residual.
    fn ffn(&mut self, l: usize, x: &str, p: &prune_transformer::Layer<Tensor<f32>>) -> String {
        let name = format!("bert.encoder.layer.{l}");
        let out = if self.config.intermediate(l) == 0 {
            self.weight(&format!("{name}.output.dense.bias"), &p.output.bias)
        } else {
            let up = self.linear(&format!("{name}.intermediate.dense"), x, &p.intermediate);
            let act = self.activation(&up);
            self.linear(&format!("{name}.output.dense"), &act, &p.output)
        };
        let sum = self.g.op("Add", &[&out, x], &[]);
        self.norm(&format!("{name}.output.LayerNorm"), &sum, &p.output_norm)
    }

    /// The embeddings of the inputs: word + token type (when the model has token types;
    /// otherwise `token_type_ids` is ignored) + position, then LayerNorm, then the
    /// projection to the hidden width when the model has one.
    fn embeddings(&mut self, ids: &str, types: &str, p: &HostParams) -> String {
        let e = &p.embeddings;
        let word = self.weight("bert.embeddings.word_embeddings.weight", &e.word);
        let position = self.weight("bert.embeddings.position_embeddings.weight", &e.position);
        let mut sum = self.g.op("Gather", &[&word, ids], &[]);
        if self.config.type_vocab_size > 0 {
            let kind = self.weight(
                "bert.embeddings.token_type_embeddings.weight",
                &e.token_type,
            );
            let kinds = self.g.op("Gather", &[&kind, types], &[]);
            sum = self.g.op("Add", &[&sum, &kinds], &[]);
        }
        let positions = match self.config.family {
            Family::Bert | Family::DistilBert | Family::Electra => self.first_positions(ids),
            Family::Roberta | Family::XlmRoberta => self.positions_after_pad(ids),
        };
        let pos = self.g.op("Gather", &[&position, &positions], &[]);
        let all = self.g.op("Add", &[&sum, &pos], &[]);
        let normed = self.norm("bert.embeddings.LayerNorm", &all, &e.norm);
        match &p.embeddings_project {
            Some(dense) => self.linear("bert.embeddings_project", &normed, dense),
            None => normed,
        }
    }

    /// BERT's position ids `0..T`, `[1, T]`: the first T of a table of `0..P`.
    fn first_positions(&mut self, ids: &str) -> String {
        let p_max = self.config.max_position_embeddings;
        let table: Vec<i64> = (0..p_max as i64).collect();
        let ids_table = self.g.ints(&[1, p_max], &table);
        let shape = self.g.op("Shape", &[ids], &[]);
        let one = self.g.ints(&[], &[1]);
        let t = self
            .g
            .op("Gather", &[&shape, &one], &[Attr::Int("axis", 0)]);
        let zero_axis = self.g.ints(&[1], &[0]);
        let t = self.g.op("Unsqueeze", &[&t, &zero_axis], &[]);
        let (start, axis) = (self.g.ints(&[1], &[0]), self.g.ints(&[1], &[1]));
        self.g.op("Slice", &[&ids_table, &start, &t, &axis], &[])
    }

    /// RoBERTa's position ids, `[B, T]`: `pad + cumsum(ids ≠ pad)` on real tokens, `pad` on
    /// padding tokens (`Family::positions`).
    fn positions_after_pad(&mut self, ids: &str) -> String {
        let pad = self.g.ints(&[], &[self.config.pad_token_id as i64]);
        let is_pad = self.g.op("Equal", &[ids, &pad], &[]);
        let real = self.g.op("Not", &[&is_pad], &[]);
        let real = (self.g).op("Cast", &[&real], &[Attr::Int("to", DataType::Int64 as i64)]);
        let axis = self.g.ints(&[], &[1]);
        let counts = self.g.op("CumSum", &[&real, &axis], &[]);
        let counts = self.g.op("Mul", &[&counts, &real], &[]);
        self.g.op("Add", &[&counts, &pad], &[])
    }

    /// The additive attention mask `(1 - mask) · f32::MIN`, `[B, 1, 1, T]`.
    fn additive_mask(&mut self, mask: &str) -> String {
        let one_axis = self.g.ints(&[1], &[1]);
        let two_axis = self.g.ints(&[1], &[2]);
        let m = self.g.op("Unsqueeze", &[mask, &one_axis], &[]);
        let m = self.g.op("Unsqueeze", &[&m, &two_axis], &[]);
        let m = self
            .g
            .op("Cast", &[&m], &[Attr::Int("to", DataType::Float as i64)]);
        let one = self.g.scalar(1.0);
        let inverted = self.g.op("Sub", &[&one, &m], &[]);
        let value = self.g.scalar(MASK_VALUE);
        self.g.op("Mul", &[&inverted, &value], &[])
    }
}

/// The ONNX model of the classifier `params` with `config` (see the module documentation),
/// encoded.
pub fn to_onnx(config: &BertConfig, params: &HostParams) -> Result<Vec<u8>> {
    let (Some(pooler), Some(classifier)) = (&params.pooler, &params.classifier) else {
        return Err(ExportError::NoHead);
    };
    let mut w = Writer {
        g: Graph::new(),
        config,
    };
    let axes = [Axis::Named("batch"), Axis::Named("sequence")];
    let ids = w.g.input("input_ids", DataType::Int64, &axes);
    let mask = w.g.input("attention_mask", DataType::Int64, &axes);
    let types = w.g.input("token_type_ids", DataType::Int64, &axes);
    let mut x = w.embeddings(&ids, &types, params);
    let additive = w.additive_mask(&mask);
    for (l, layer) in params.layers.iter().enumerate() {
        let last = l + 1 == params.layers.len();
        let attended = w.attention(l, &x, &additive, layer, last);
        x = w.ffn(l, &attended, layer);
    }
    let first = w.g.ints(&[], &[0]);
    let cls = w.g.op("Gather", &[&x, &first], &[Attr::Int("axis", 1)]);
    let pooled = w.gemm("bert.pooler.dense", &cls, pooler);
    let pooled = match config.family.head_activation() {
        HeadActivation::Tanh => w.g.op("Tanh", &[&pooled], &[]),
        HeadActivation::Relu => w.g.op("Relu", &[&pooled], &[]),
        HeadActivation::Gelu => w.gelu(&pooled),
    };
    let logits = w.gemm("classifier", &pooled, classifier);
    w.g.rename(&logits, "logits");
    let labels = classifier.bias.dims()[0];
    w.g.output(
        "logits",
        DataType::Float,
        &[Axis::Named("batch"), Axis::Fixed(labels)],
    );
    let metadata = [
        ("heads".to_string(), format!("{:?}", config.layer_heads)),
        (
            "intermediate".to_string(),
            format!("{:?}", config.layer_intermediate),
        ),
        ("hidden".to_string(), config.hidden().to_string()),
    ];
    let doc = "BERT sequence classifier exported by prune";
    Ok(w.g.encode("bert", doc, &metadata))
}
