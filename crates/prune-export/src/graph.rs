//! A small builder of ONNX graphs: named values, operators with attributes, weights and
//! constants as initializers, typed inputs and outputs, and the encoded model.

use crate::proto::{
    AttributeProto, AttributeType, DataType, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto,
};
use prost::Message;

/// The standard operator set the graphs use (LayerNormalization needs 17).
pub const OPSET: i64 = 17;

/// The IR version that goes with [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// An attribute of a node.
#[derive(Clone, Debug)]
pub enum Attr {
    /// An integer.
    Int(&'static str, i64),
    /// A float.
    Float(&'static str, f32),
    /// A list of integers.
    Ints(&'static str, Vec<i64>),
}

impl Attr {
    fn proto(&self) -> AttributeProto {
        let mut a = AttributeProto::default();
        match self {
            Attr::Int(name, i) => {
                a.name = name.to_string();
                a.r#type = AttributeType::Int as i32;
                a.i = *i;
            }
            Attr::Float(name, f) => {
                a.name = name.to_string();
                a.r#type = AttributeType::Float as i32;
                a.f = *f;
            }
            Attr::Ints(name, ints) => {
                a.name = name.to_string();
                a.r#type = AttributeType::Ints as i32;
                a.ints = ints.clone();
            }
        }
        a
    }
}

/// An axis of a graph input or output: fixed, or named and dynamic.
#[derive(Clone, Debug)]
pub enum Axis {
    /// A fixed size.
    Fixed(usize),
    /// A dynamic size with this name.
    Named(&'static str),
}

/// A graph under construction.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: usize,
}

fn value_info(name: &str, elem: DataType, axes: &[Axis]) -> ValueInfoProto {
    let dim = axes
        .iter()
        .map(|a| match a {
            Axis::Fixed(n) => Dimension {
                dim_value: Some(*n as i64),
                dim_param: None,
            },
            Axis::Named(p) => Dimension {
                dim_value: None,
                dim_param: Some(p.to_string()),
            },
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem: DataType, axes: &[Axis]) -> String {
        self.inputs.push(value_info(name, elem, axes));
        name.to_string()
    }

    /// Declares the value `name` a graph output.
    pub fn output(&mut self, name: &str, elem: DataType, axes: &[Axis]) {
        self.outputs.push(value_info(name, elem, axes));
    }

    /// A float initializer `name` of shape `dims` (row-major `data`); returns its name.
    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, DataType::Float, raw)
    }

    /// A float scalar constant; returns its name.
    pub fn scalar(&mut self, value: f32) -> String {
        let name = self.fresh("const");
        self.tensor(&name, &[], DataType::Float, value.to_le_bytes().to_vec())
    }

    /// An int64 constant of shape `dims`; returns its name.
    pub fn ints(&mut self, dims: &[usize], values: &[i64]) -> String {
        let name = self.fresh("const");
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(&name, dims, DataType::Int64, raw)
    }

    fn tensor(&mut self, name: &str, dims: &[usize], elem: DataType, raw: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: elem as i32,
            name: name.to_string(),
            raw_data: raw,
        });
        name.to_string()
    }

    /// A value name not used before, starting with `stem`.
    pub fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    /// Adds the standard operator `op` on `inputs` with `attrs`; returns its output's name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: &[Attr]) -> String {
        let out = self.fresh(op);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: format!("{out}_node"),
            op_type: op.to_string(),
            attribute: attrs.iter().map(Attr::proto).collect(),
            domain: String::new(),
        });
        out
    }

    /// Renames the value `from` (an operator's output) to `to`, e.g. to make it a graph
    /// output under its published name.
    pub fn rename(&mut self, from: &str, to: &str) {
        for node in &mut self.nodes {
            for name in node.output.iter_mut().chain(node.input.iter_mut()) {
                if name == from {
                    *name = to.to_string();
                }
            }
        }
    }

    /// The encoded model: this graph at [`OPSET`], with `metadata` and a description.
    pub fn encode(self, name: &str, doc: &str, metadata: &[(String, String)]) -> Vec<u8> {
        let model = ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "prune".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: name.into(),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
            }),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        };
        model.encode_to_vec()
    }
}
