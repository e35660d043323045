//! The pickle of a PyTorch state dict (`data.pkl` in a `torch.save` zip), read without
//! running it. A pickle is a program that may call any Python function, so nothing here
//! calls anything: a small stack machine accepts the opcodes `torch.save` writes for a
//! dict of tensors and only the globals a tensor rebuild names (`collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2` and `_rebuild_parameter`, the typed storages), whose
//! calls it evaluates itself into plain values. Any other opcode or global is an error
//! naming it.

use safetensors::Dtype;
use std::collections::HashMap;

/// Deepest stack a state dict's pickle may need (pickle sets a dict's items 1,000 at a
/// time, so a few thousand suffice), and most memo entries.
const MAX_ITEMS: usize = 1 << 16;

/// Deepest nesting of tuples, lists and dicts (a state dict needs 3).
const MAX_DEPTH: usize = 32;

/// Values the memo may copy in all (`PUT` and `GET` copy; a state dict copies a few dozen
/// per tensor), so that a pickle cannot grow exponentially by getting what it put.
const MAX_COPIED: usize = 1 << 20;

/// Where a tensor's elements are: a storage of the archive and the view on it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// Element type of the storage.
    pub dtype: Dtype,
    /// Storage key: its bytes are `<archive>/data/<key>`.
    pub key: String,
    /// Elements in the storage.
    pub storage_len: usize,
    /// First element of the view.
    pub offset: usize,
    /// Shape of the view.
    pub shape: Vec<usize>,
    /// Strides of the view, in elements.
    pub stride: Vec<usize>,
}

/// A value the machine can hold.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// An allowed global, by what it is.
    Global(Global),
    /// A storage named by a persistent id.
    Storage {
        dtype: Dtype,
        key: String,
        len: usize,
    },
    Tensor(TensorRef),
    Mark,
}

/// The globals a state dict's pickle may name.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(Dtype),
}

/// The global `module.name`, if allowed.
fn global(module: &str, name: &str) -> Option<Global> {
    let storage = |dtype| Some(Global::Storage(dtype));
    match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch", "FloatStorage") => storage(Dtype::F32),
        ("torch", "HalfStorage") => storage(Dtype::F16),
        ("torch", "BFloat16Storage") => storage(Dtype::BF16),
        ("torch", "DoubleStorage") => storage(Dtype::F64),
        ("torch", "LongStorage") => storage(Dtype::I64),
        ("torch", "IntStorage") => storage(Dtype::I32),
        ("torch", "ShortStorage") => storage(Dtype::I16),
        ("torch", "CharStorage") => storage(Dtype::I8),
        ("torch", "ByteStorage") => storage(Dtype::U8),
        ("torch", "BoolStorage") => storage(Dtype::BOOL),
        _ => None,
    }
}

/// The global `module.name`, or an error saying it is refused.
fn allowed(module: &str, name: &str) -> Result<Global, String> {
    global(module, name).ok_or_else(|| {
        format!(
            "the pickle names `{module}.{name}`, which a state dict of tensors does not need \
             (refused: a pickle must not run code)"
        )
    })
}

/// Reads `data.pkl` and returns its tensors by name (entries of the dict that are not
/// tensors, such as `_metadata`, are left out), in the pickle's order.
pub fn state_dict(pickle: &[u8]) -> Result<Vec<(String, TensorRef)>, String> {
    let top = Machine::new(pickle).run()?;
    let Value::Dict(items) = top else {
        return Err("the pickle does not hold a dict of tensors".into());
    };
    Ok(items
        .into_iter()
        .filter_map(|(k, v)| match (k, v) {
            (Value::Str(name), Value::Tensor(t)) => Some((name, t)),
            _ => None,
        })
        .collect())
}

/// Values in `v` and its nesting depth (containers hold at most [`MAX_DEPTH`] levels, so
/// the recursion is shallow).
fn extent(v: &Value) -> (usize, usize) {
    let inner = |items: &mut dyn Iterator<Item = &Value>| {
        items
            .map(extent)
            .fold((1, 1), |(n, d), (m, e)| (n + m, d.max(e + 1)))
    };
    match v {
        Value::Tuple(x) | Value::List(x) => inner(&mut x.iter()),
        Value::Dict(x) => inner(&mut x.iter().flat_map(|(k, v)| [k, v])),
        _ => (1, 0),
    }
}

/// The stack machine over one pickle.
struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<usize, Value>,
    /// Values the memo may still copy.
    copies_left: usize,
}

impl<'a> Machine<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Machine {
            bytes,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            copies_left: MAX_COPIED,
        }
    }

    /// Charges a copy of `v` to the memo's allowance.
    fn copying(&mut self, v: &Value) -> Result<(), String> {
        let (n, _) = extent(v);
        self.copies_left = self
            .copies_left
            .checked_sub(n)
            .ok_or("the pickle copies more values than any state dict")?;
        Ok(())
    }

    /// Checks that `items` may go into a container (its depth stays within bounds).
    fn nesting(items: &[Value]) -> Result<(), String> {
        if items.iter().any(|v| extent(v).1 >= MAX_DEPTH) {
            return Err(format!("values nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end =
            end.ok_or_else(|| format!("the pickle ends inside an opcode at byte {}", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, String> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("a GLOBAL without its newline")?;
        let s =
            String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a GLOBAL that is not UTF-8")?;
        self.pos += 1;
        Ok(s)
    }

    fn text(&mut self, n: usize) -> Result<Value, String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map(Value::Str)
            .map_err(|_| format!("a string that is not UTF-8 at byte {}", self.pos))
    }

    fn push(&mut self, v: Value) -> Result<(), String> {
        if self.stack.len() >= MAX_ITEMS {
            return Err("the pickle's stack grows beyond any state dict's".into());
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "the pickle pops an empty stack".to_string())
    }

    /// Everything above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or("no MARK to pop to")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn put(&mut self, index: u64) -> Result<(), String> {
        let i = usize::try_from(index).map_err(|_| "a memo index beyond any state dict's")?;
        let top = self.stack.last().cloned().ok_or("PUT on an empty stack")?;
        self.copying(&top)?;
        if self.memo.len() >= MAX_ITEMS && !self.memo.contains_key(&i) {
            return Err("the pickle memoizes more values than any state dict".into());
        }
        self.memo.insert(i, top);
        Ok(())
    }

    fn get(&mut self, index: u64) -> Result<(), String> {
        let v = usize::try_from(index)
            .ok()
            .and_then(|i| self.memo.get(&i).cloned());
        let v = v.ok_or_else(|| format!("GET of memo {index}, never put"))?;
        self.copying(&v)?;
        self.push(v)
    }

    /// Sets `items` (key, value, key, value, …) into the dict on top of the stack.
    fn set_items(&mut self, items: Vec<Value>) -> Result<(), String> {
        if items.len() % 2 != 0 {
            return Err("SETITEMS with a key and no value".into());
        }
        Self::nesting(&items)?;
        let Some(Value::Dict(d)) = self.stack.last_mut() else {
            return Err("SETITEMS on something that is not a dict".into());
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    let proto = self.uint(1)?;
                    if proto > 5 {
                        return Err(format!("pickle protocol {proto} is not one Python writes"));
                    }
                }
                0x95 => {
                    self.uint(8)?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b'(' => self.push(Value::Mark)?,
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'K' => {
                    let v = self.uint(1)? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = self.uint(2)? as i64;
                    self.push(Value::Int(v))?
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32 as i64;
                    self.push(Value::Int(v))?
                }
                0x8a => {
                    let n = self.uint(1)? as usize;
                    if n > 8 {
                        return Err(format!("an integer of {n} bytes at byte {at}"));
                    }
                    let raw = self.uint(n)?;
                    let v = if n > 0 && n < 8 && raw >> (8 * n - 1) & 1 == 1 {
                        raw as i64 - (1i64 << (8 * n))
                    } else {
                        raw as i64
                    };
                    self.push(Value::Int(v))?
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().map_err(|_| "BINFLOAT")?);
                    self.push(Value::Float(v))?
                }
                // BINUNICODE, SHORT_BINUNICODE: a length of 4 or 1 bytes, then UTF-8.
                b'X' | 0x8c => {
                    let n = self.uint(if op == b'X' { 4 } else { 1 })? as usize;
                    let v = self.text(n)?;
                    self.push(v)?
                }
                // BINPUT, LONG_BINPUT, MEMOIZE: the top into the memo.
                b'q' | b'r' | 0x94 => {
                    let i = match op {
                        b'q' => self.uint(1)?,
                        b'r' => self.uint(4)?,
                        _ => self.memo.len() as u64,
                    };
                    self.put(i)?
                }
                // BINGET, LONG_BINGET.
                b'h' | b'j' => {
                    let i = self.uint(if op == b'h' { 1 } else { 4 })?;
                    self.get(i)?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    Self::nesting(&items)?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let at = self
                        .stack
                        .len()
                        .checked_sub(n)
                        .ok_or("TUPLE of too few items")?;
                    let items = self.stack.split_off(at);
                    if items.contains(&Value::Mark) {
                        return Err("a MARK inside a TUPLE".into());
                    }
                    Self::nesting(&items)?;
                    self.push(Value::Tuple(items))?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    Self::nesting(&items)?;
                    match self.stack.last_mut() {
                        Some(Value::List(l)) => l.extend(items),
                        _ => return Err("APPENDS on something that is not a list".into()),
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    Self::nesting(std::slice::from_ref(&v))?;
                    match self.stack.last_mut() {
                        Some(Value::List(l)) => l.push(v),
                        _ => return Err("APPEND on something that is not a list".into()),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?
                }
                b'c' => {
                    let (module, name) = (self.line()?, self.line()?);
                    self.push(Value::Global(allowed(&module, &name)?))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err("STACK_GLOBAL of something that is not two strings".into());
                    };
                    self.push(Value::Global(allowed(&module, &name)?))?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = storage(pid)?;
                    self.push(v)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = reduce(f, args)?;
                    self.push(v)?
                }
                b'b' => {
                    // BUILD: the state of an OrderedDict (its `_metadata`) is dropped.
                    self.pop()?;
                    match self.stack.last() {
                        Some(Value::Dict(_)) => {}
                        _ => return Err("BUILD on something that is not a dict".into()),
                    }
                }
                other => {
                    return Err(format!(
                        "pickle opcode 0x{other:02x} at byte {at} is not one a state dict of tensors needs"
                    ));
                }
            }
        }
    }
}

/// A non-negative integer value.
fn index(v: &Value, what: &str) -> Result<usize, String> {
    match v {
        Value::Int(i) if *i >= 0 => {
            usize::try_from(*i).map_err(|_| format!("{what} {i} too large"))
        }
        _ => Err(format!("{what} is not a non-negative integer")),
    }
}

/// A tuple of non-negative integers.
fn indices(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) => items.iter().map(|i| index(i, what)).collect(),
        _ => Err(format!("{what} is not a tuple")),
    }
}

/// The storage a persistent id `('storage', type, key, location, numel)` names.
fn storage(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items) = pid else {
        return Err("a persistent id that is not a tuple".into());
    };
    match items.as_slice() {
        [
            Value::Str(tag),
            Value::Global(Global::Storage(dtype)),
            Value::Str(key),
            _,
            len,
        ] if tag == "storage" => {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("a storage key {key:?} that is not a plain name"));
            }
            Ok(Value::Storage {
                dtype: *dtype,
                key: key.clone(),
                len: index(len, "a storage's length")?,
            })
        }
        _ => Err("a persistent id that is not ('storage', type, key, location, length)".into()),
    }
}

/// The value of calling the allowed global `f` with `args`.
fn reduce(f: Value, args: Value) -> Result<Value, String> {
    let Value::Tuple(args) = args else {
        return Err("REDUCE with arguments that are not a tuple".into());
    };
    match (f, args.as_slice()) {
        (Value::Global(Global::OrderedDict), []) => Ok(Value::Dict(Vec::new())),
        (Value::Global(Global::RebuildTensor), [st, offset, shape, stride, ..]) => {
            let Value::Storage { dtype, key, len } = st else {
                return Err("_rebuild_tensor_v2 of something that is not a storage".into());
            };
            let t = TensorRef {
                dtype: *dtype,
                key: key.clone(),
                storage_len: *len,
                offset: index(offset, "a tensor's storage offset")?,
                shape: indices(shape, "a tensor's size")?,
                stride: indices(stride, "a tensor's stride")?,
            };
            if t.shape.len() != t.stride.len() {
                return Err("a tensor whose size and stride differ in length".into());
            }
            Ok(Value::Tensor(t))
        }
        (Value::Global(Global::RebuildParameter), [t @ Value::Tensor(_), ..]) => Ok(t.clone()),
        (f, _) => Err(format!(
            "a call the pickle of a state dict does not make ({f:?})"
        )),
    }
}
