//! The parameter tree of BERT, generic over what sits at each leaf: the parameters
//! themselves (`B::Tensor`), their gradients and optimizer moments (the same type), their
//! masks (`Option<B::Tensor>`) or their expected shapes (`Shape`). Every leaf is reached by
//! its Hugging Face name (without the `bert.` prefix), e.g.
//! `encoder.layer.3.attention.self.query.weight`.

use crate::config::BertConfig;
use crate::family::FAMILIES;
use prune_tensor::Shape;

/// The prefix transformers puts before encoder parameters in task models.
pub const BERT_PREFIX: &str = "bert.";

/// The name prefix of the embeddings' projection to the hidden width.
const PROJECTION: &str = "embeddings_project.";

/// A parameter name without transformers' model prefix (`bert.`, `roberta.`): the
/// canonical form used here.
pub fn canonical_name(name: &str) -> &str {
    (FAMILIES.iter())
        .find_map(|f| name.strip_prefix(f.prefix()))
        .unwrap_or(name)
}

/// A linear layer `y = x · Wᵀ + b` with a PyTorch-layout weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear<T> {
    /// `[O, I]`
    pub weight: T,
    /// `[O]`
    pub bias: T,
}

/// LayerNorm's affine parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm<T> {
    /// γ, `[C]`
    pub weight: T,
    /// β, `[C]`
    pub bias: T,
}

/// The embedding tables and their LayerNorm (`embeddings.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings<T> {
    /// `word_embeddings.weight`, `[V, C]`
    pub word: T,
    /// `position_embeddings.weight`, `[P, C]`
    pub position: T,
    /// `token_type_embeddings.weight`, `[S, C]`
    pub token_type: T,
    /// `LayerNorm`, `[C]` each
    pub norm: LayerNorm<T>,
}

/// One encoder layer (`encoder.layer.{i}.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct Layer<T> {
    /// `attention.self.query`: `[H·D, C]`, `[H·D]`
    pub query: Linear<T>,
    /// `attention.self.key`: `[H·D, C]`, `[H·D]`
    pub key: Linear<T>,
    /// `attention.self.value`: `[H·D, C]`, `[H·D]`
    pub value: Linear<T>,
    /// `attention.output.dense`: `[C, H·D]`, `[C]`
    pub attention_output: Linear<T>,
    /// `attention.output.LayerNorm`: `[C]` each
    pub attention_norm: LayerNorm<T>,
    /// `intermediate.dense`: `[F, C]`, `[F]`
    pub intermediate: Linear<T>,
    /// `output.dense`: `[C, F]`, `[C]`
    pub output: Linear<T>,
    /// `output.LayerNorm`: `[C]` each
    pub output_norm: LayerNorm<T>,
}

/// Every parameter of a BERT model with its optional pooler and classification head.
#[derive(Clone, Debug, PartialEq)]
pub struct BertParams<T> {
    /// `embeddings.*`
    pub embeddings: Embeddings<T>,
    /// `embeddings_project`: `[C, E]`, `[C]`, when the embeddings have a width E of their
    /// own (ELECTRA; see [`BertConfig::projects_embeddings`]).
    pub embeddings_project: Option<Linear<T>>,
    /// `encoder.layer.{i}.*`, `[L]` layers
    pub layers: Vec<Layer<T>>,
    /// `pooler.dense`: `[C₀, C]`, `[C₀]` (C₀ = `hidden_size`, the width before pruning)
    pub pooler: Option<Linear<T>>,
    /// `classifier`: `[K, C₀]`, `[K]`
    pub classifier: Option<Linear<T>>,
}

/// Implements `visit`, `visit_mut` and `try_map` for a node of the tree: its own leaves
/// first, then its child nodes, in declaration order (transformers' state-dict order).
macro_rules! node {
    ($ty:ident { $($field:ident => $name:literal),* $(,)? } leaves { $($leaf:ident => $lname:literal),* $(,)? }) => {
        impl<T> $ty<T> {
            /// Visits every leaf with its full name under `prefix`.
            pub fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a T)) {
                $( f(format!("{prefix}{}", $lname), &self.$leaf); )*
                $( self.$field.visit(&format!("{prefix}{}.", $name), f); )*
            }

            /// Visits every leaf mutably with its full name under `prefix`.
            pub fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut T)) {
                $( f(format!("{prefix}{}", $lname), &mut self.$leaf); )*
                $( self.$field.visit_mut(&format!("{prefix}{}.", $name), f); )*
            }

            /// The same tree with every leaf mapped by `f(name, leaf)`.
            pub fn try_map<U, E>(
                &self,
                prefix: &str,
                f: &mut dyn FnMut(&str, &T) -> Result<U, E>,
            ) -> Result<$ty<U>, E> {
                Ok($ty {
                    $( $leaf: f(&format!("{prefix}{}", $lname), &self.$leaf)?, )*
                    $( $field: self.$field.try_map(&format!("{prefix}{}.", $name), f)?, )*
                })
            }
        }
    };
}

node!(Linear {} leaves { weight => "weight", bias => "bias" });
node!(LayerNorm {} leaves { weight => "weight", bias => "bias" });
node!(Embeddings { norm => "LayerNorm" } leaves {
    word => "word_embeddings.weight",
    position => "position_embeddings.weight",
    token_type => "token_type_embeddings.weight",
});
node!(Layer {
    query => "attention.self.query",
    key => "attention.self.key",
    value => "attention.self.value",
    attention_output => "attention.output.dense",
    attention_norm => "attention.output.LayerNorm",
    intermediate => "intermediate.dense",
    output => "output.dense",
    output_norm => "output.LayerNorm",
} leaves {});

impl<T> BertParams<T> {
    /// Visits every parameter with its canonical name, in a fixed order (embeddings, their
    /// projection, layers, pooler, classifier).
    pub fn visit<'a>(&'a self, f: &mut dyn FnMut(String, &'a T)) {
        self.embeddings.visit("embeddings.", f);
        if let Some(p) = &self.embeddings_project {
            p.visit(PROJECTION, f);
        }
        for (i, layer) in self.layers.iter().enumerate() {
            layer.visit(&format!("encoder.layer.{i}."), f);
        }
        if let Some(p) = &self.pooler {
            p.visit("pooler.dense.", f);
        }
        if let Some(c) = &self.classifier {
            c.visit("classifier.", f);
        }
    }

    /// Visits every parameter mutably, in the order of [`BertParams::visit`].
    pub fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(String, &'a mut T)) {
        self.embeddings.visit_mut("embeddings.", f);
        if let Some(p) = &mut self.embeddings_project {
            p.visit_mut(PROJECTION, f);
        }
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_mut(&format!("encoder.layer.{i}."), f);
        }
        if let Some(p) = &mut self.pooler {
            p.visit_mut("pooler.dense.", f);
        }
        if let Some(c) = &mut self.classifier {
            c.visit_mut("classifier.", f);
        }
    }

    /// `(name, &leaf)` pairs in visiting order.
    pub fn named(&self) -> Vec<(String, &T)> {
        let mut out = Vec::new();
        self.visit(&mut |n, t| out.push((n, t)));
        out
    }

    /// `(name, &mut leaf)` pairs in visiting order; two mirrored trees (parameters and
    /// gradients, say) zip pair by pair.
    pub fn named_mut(&mut self) -> Vec<(String, &mut T)> {
        let mut out = Vec::new();
        self.visit_mut(&mut |n, t| out.push((n, t)));
        out
    }

    /// The leaf called `name` (canonical or with the `bert.` prefix).
    pub fn get(&self, name: &str) -> Option<&T> {
        let name = canonical_name(name);
        self.named()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
    }

    /// The leaf called `name`, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        let name = canonical_name(name);
        self.named_mut()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
    }

    /// The same tree with every leaf mapped by `f(name, leaf)`; the first error stops it.
    pub fn try_map<U, E>(
        &self,
        mut f: impl FnMut(&str, &T) -> Result<U, E>,
    ) -> Result<BertParams<U>, E> {
        let f: &mut dyn FnMut(&str, &T) -> Result<U, E> = &mut f;
        Ok(BertParams {
            embeddings: self.embeddings.try_map("embeddings.", f)?,
            embeddings_project: (self.embeddings_project.as_ref())
                .map(|p| p.try_map(PROJECTION, f))
                .transpose()?,
            layers: self
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| l.try_map(&format!("encoder.layer.{i}."), f))
                .collect::<Result<_, E>>()?,
            pooler: self
                .pooler
                .as_ref()
                .map(|p| p.try_map("pooler.dense.", f))
                .transpose()?,
            classifier: self
                .classifier
                .as_ref()
                .map(|c| c.try_map("classifier.", f))
                .transpose()?,
        })
    }

    /// The same tree with every leaf mapped by an infallible `f(name, leaf)`.
    pub fn map<U>(&self, mut f: impl FnMut(&str, &T) -> U) -> BertParams<U> {
        self.try_map(|n, t| Ok::<U, std::convert::Infallible>(f(n, t)))
            .unwrap_or_else(|e| match e {})
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.named().len()
    }

    /// Whether the tree has no leaves (never true for a real model).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl BertParams<Shape> {
    /// The shape of every parameter a model with `config` has, with a pooler (`[C₀, C]`)
    /// and a classifier (`[K, C₀]`, K = `config.labels()`, C₀ = `hidden_size`) when asked.
    pub fn expected(config: &BertConfig, pooler: bool, classifier: bool) -> Self {
        let c = config.hidden();
        let e = config.embedding_width();
        let d = config.head_dim();
        let linear = |o: usize, i: usize| Linear {
            weight: Shape::from([o, i]),
            bias: Shape::from([o]),
        };
        let norm = |c: usize| LayerNorm {
            weight: Shape::from([c]),
            bias: Shape::from([c]),
        };
        BertParams {
            embeddings: Embeddings {
                word: Shape::from([config.vocab_size, e]),
                position: Shape::from([config.max_position_embeddings, e]),
                token_type: Shape::from([config.type_vocab_size, e]),
                norm: norm(e),
            },
            embeddings_project: config.projects_embeddings().then(|| linear(c, e)),
            layers: (0..config.num_hidden_layers)
                .map(|l| {
                    let hd = config.heads(l) * d;
                    let f = config.intermediate(l);
                    Layer {
                        query: linear(hd, c),
                        key: linear(hd, c),
                        value: linear(hd, c),
                        attention_output: linear(c, hd),
                        attention_norm: norm(c),
                        intermediate: linear(f, c),
                        output: linear(c, f),
                        output_norm: norm(c),
                    }
                })
                .collect(),
            // Hidden-width pruning narrows the pooler's input only: its output (and so the
            // classifier's input) keeps the original width.
            pooler: pooler.then(|| linear(config.hidden_size, c)),
            classifier: classifier.then(|| linear(config.labels(), config.hidden_size)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_transformers() {
        let cfg = BertConfig::new(50, 32, 2, 4, 64).unwrap();
        let shapes = BertParams::expected(&cfg, true, true);
        let names: Vec<String> = shapes.named().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 5 + 2 * 16 + 2 + 2);
        assert_eq!(names[0], "embeddings.word_embeddings.weight");
        assert_eq!(names[3], "embeddings.LayerNorm.weight");
        assert!(names.contains(&"encoder.layer.1.attention.self.query.weight".to_string()));
        assert!(names.contains(&"encoder.layer.0.attention.output.LayerNorm.bias".to_string()));
        assert!(names.contains(&"encoder.layer.1.output.dense.weight".to_string()));
        assert_eq!(names.last().unwrap(), "classifier.bias");
        assert_eq!(
            shapes.get("bert.encoder.layer.1.intermediate.dense.weight"),
            Some(&Shape::from([64, 32]))
        );
        let mapped = shapes.map(|n, s| (n.to_string(), s.numel()));
        assert_eq!(mapped.classifier.unwrap().bias.1, 2);
    }
}
