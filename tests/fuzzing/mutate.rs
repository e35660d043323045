//! Mutations of fuzz inputs: bit flips, byte insertion, deletion and duplication, splicing,
//! interesting integers (as text and as little-endian bytes) and tokens, long runs, and
//! JSON-aware replacement of values and keys.

use prune::tensor::rng::Rng;
use serde_json::Value;

/// Most inputs kept in a target's pool of accepted mutants.
const POOL: usize = 256;

/// Longest input, in bytes: long enough for long lines and strings, short enough that
/// mutants of mutants do not grow without bound and slow the run down.
const MAX_INPUT: usize = 1 << 16;

/// Integers worth trying wherever a number is read: limits of the integer types, powers
/// of two near allocation sizes, and values that overflow products.
const INTERESTING_INTS: [i128; 22] = [
    0,
    1,
    -1,
    2,
    3,
    7,
    255,
    256,
    1024,
    1025,
    65535,
    1 << 24,
    (1 << 31) - 1,
    1 << 31,
    1 << 32,
    1_000_000_000,
    1 << 53,
    1 << 62,
    i64::MAX as i128,
    u64::MAX as i128,
    1 << 64,
    i64::MIN as i128,
];

/// Textual tokens worth splicing into text inputs.
const TOKENS: [&str; 24] = [
    "NaN",
    "-NaN",
    "Infinity",
    "-inf",
    "inf",
    "nan",
    "1e308",
    "-1e308",
    "1e999",
    "1e-400",
    "-0",
    "0.5",
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    "\t",
    "\r\n",
    "\n\n",
    "\u{feff}",
    "\\u0000",
    "\u{10ffff}",
];

/// Mutates seed inputs and accepted mutants.
pub struct Mutator {
    rng: Rng,
    seeds: Vec<Vec<u8>>,
    pool: Vec<Vec<u8>>,
    /// Every string and key of the JSON seeds (and a few variants), for JSON-aware
    /// replacement.
    words: Vec<String>,
}

impl Mutator {
    /// A mutator seeded with `seed`, starting from `seeds`.
    pub fn new(seed: u64, seeds: Vec<Vec<u8>>) -> Self {
        let mut words = Vec::new();
        for s in &seeds {
            if let Ok(v) = serde_json::from_slice::<Value>(s) {
                collect_words(&v, &mut words);
            }
        }
        let variants: Vec<String> = words
            .iter()
            .flat_map(|w| {
                [
                    format!("bert.{w}"),
                    w.replace("weight", "gamma"),
                    w.to_uppercase(),
                ]
            })
            .collect();
        words.extend(variants);
        words.extend(["", "x", "F16", "BF16", "F64", "I64", "BOOL", "F4", "U8"].map(String::from));
        words.sort();
        words.dedup();
        Mutator {
            rng: Rng::new(seed),
            seeds,
            pool: Vec::new(),
            words,
        }
    }

    /// Keeps an accepted input for later mutation.
    pub fn keep(&mut self, input: Vec<u8>) {
        if self.pool.len() < POOL {
            self.pool.push(input);
        } else {
            let i = self.rng.below(POOL);
            self.pool[i] = input;
        }
    }

    /// A seed or a pooled input.
    fn pick(&mut self) -> Vec<u8> {
        let n = self.seeds.len() + self.pool.len();
        let i = self.rng.below(n);
        match self.seeds.get(i) {
            Some(s) => s.clone(),
            None => self.pool[i - self.seeds.len()].clone(),
        }
    }

    /// The next input: a seed or pooled input with one to four mutations, at most
    /// [`MAX_INPUT`] bytes long.
    pub fn next_input(&mut self) -> Vec<u8> {
        let mut data = self.pick();
        for _ in 0..1 + self.rng.below(4) {
            self.mutate(&mut data);
        }
        data.truncate(MAX_INPUT);
        data
    }

    /// A random position in `data`, `0..=len`.
    fn pos(&mut self, data: &[u8]) -> usize {
        self.rng.below(data.len() + 1)
    }

    /// A random range of `data` of up to 64 bytes.
    fn range(&mut self, data: &[u8]) -> std::ops::Range<usize> {
        let start = self.pos(data);
        let len = self.rng.below(65).min(data.len() - start);
        start..start + len
    }

    fn mutate(&mut self, data: &mut Vec<u8>) {
        match self.rng.below(12) {
            0 if !data.is_empty() => {
                let i = self.rng.below(data.len());
                data[i] ^= 1 << self.rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = self.rng.below(data.len());
                data[i] = self.rng.next_u64() as u8;
            }
            2 => {
                let at = self.pos(data);
                let n = 1 + self.rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                data.splice(at..at, bytes);
            }
            3 => {
                let r = self.range(data);
                data.drain(r);
            }
            4 => {
                let r = self.range(data);
                let copy = data[r].to_vec();
                let at = self.pos(data);
                data.splice(at..at, copy);
            }
            5 => {
                let other = self.pick();
                let from = self.range(&other);
                let to = self.range(data);
                data.splice(to, other[from].iter().copied());
            }
            6 => self.replace_number(data),
            7 => {
                let at = self.pos(data);
                let token = TOKENS[self.rng.below(TOKENS.len())];
                data.splice(at..at, token.bytes());
            }
            8 => {
                // An interesting integer over 1, 2, 4 or 8 bytes (little-endian), at the
                // start (a length prefix) or anywhere.
                let width = 1 << self.rng.below(4);
                let value = INTERESTING_INTS[self.rng.below(INTERESTING_INTS.len())] as u64;
                let at = if self.rng.below(2) == 0 {
                    0
                } else {
                    self.pos(data)
                };
                let end = (at + width).min(data.len());
                data.splice(at..end, value.to_le_bytes()[..width].iter().copied());
            }
            9 => {
                // A huge run of one byte (long lines, long strings).
                let at = self.pos(data);
                let byte = data.get(at).copied().unwrap_or(b'a');
                let n = 1 << (8 + self.rng.below(8));
                data.splice(at..at, std::iter::repeat_n(byte, n));
            }
            _ => self.mutate_json(data),
        }
    }

    /// Replaces a run of digits (with its sign, point and exponent) by an interesting number
    /// or token.
    fn replace_number(&mut self, data: &mut Vec<u8>) {
        let starts: Vec<usize> = (0..data.len())
            .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
            .collect();
        if starts.is_empty() {
            return;
        }
        let mut start = starts[self.rng.below(starts.len())];
        if start > 0 && data[start - 1] == b'-' {
            start -= 1;
        }
        let end = (start + 1..data.len())
            .find(|&i| !(data[i].is_ascii_digit() || b".eE+-".contains(&data[i])))
            .unwrap_or(data.len());
        let text = if self.rng.below(3) == 0 {
            TOKENS[self.rng.below(12)].to_string()
        } else {
            INTERESTING_INTS[self.rng.below(INTERESTING_INTS.len())].to_string()
        };
        data.splice(start..end, text.bytes());
    }

    /// Parses `data` as JSON and changes one value or key; not JSON: a byte-level change.
    fn mutate_json(&mut self, data: &mut Vec<u8>) {
        let Ok(mut v) = serde_json::from_slice::<Value>(data) else {
            return self.replace_number(data);
        };
        let count = count_nodes(&v);
        let target = self.rng.below(count);
        let replacement = self.interesting_value();
        let key = self.words[self.rng.below(self.words.len())].clone();
        let (op, r) = (self.rng.below(4), self.rng.next_u64() as usize);
        let mut seen = 0;
        edit_node(
            &mut v,
            target,
            &mut seen,
            &mut |node| match (op, &mut *node) {
                (0, Value::Object(m)) if !m.is_empty() => {
                    // Rename a key (duplicates, aliases, prefixes) or drop it.
                    let k = m.keys().nth(r % m.len()).cloned().unwrap_or_default();
                    if let Some(old) = m.remove(&k)
                        && !key.is_empty()
                    {
                        m.insert(key.clone(), old);
                    }
                }
                (1, Value::Object(m)) => {
                    m.insert(key.clone(), replacement.clone());
                }
                (2, Value::Array(a)) if !a.is_empty() => {
                    let i = r % a.len();
                    let copy = a[i].clone();
                    a.insert(i, copy);
                }
                _ => *node = replacement.clone(),
            },
        );
        let text = if self.rng.below(2) == 0 {
            serde_json::to_vec(&v)
        } else {
            serde_json::to_vec_pretty(&v)
        };
        if let Ok(t) = text {
            *data = t;
        }
    }

    /// A JSON value worth trying in place of any other.
    fn interesting_value(&mut self) -> Value {
        let pick = |rng: &mut Rng| INTERESTING_INTS[rng.below(INTERESTING_INTS.len())];
        match self.rng.below(10) {
            0..=3 => {
                let n = pick(&mut self.rng);
                serde_json::from_str(&n.to_string()).unwrap_or(Value::Null)
            }
            4 => [1e308, -1e308, 1e-308, 0.5, -0.0, 1.5][self.rng.below(6)].into(),
            5 => Value::String(self.words[self.rng.below(self.words.len())].clone()),
            6 => [
                Value::Null,
                true.into(),
                Value::Array(vec![]),
                Value::Object(Default::default()),
            ][self.rng.below(4)]
            .clone(),
            7 => {
                let n = pick(&mut self.rng);
                let len = 1 + self.rng.below(2000);
                Value::Array(vec![
                    serde_json::from_str(&n.to_string())
                        .unwrap_or(Value::Null);
                    len
                ])
            }
            8 => {
                // Deep nesting (parsers that recurse).
                let depth = 1 + self.rng.below(200);
                (0..depth).fold(Value::Null, |v, _| Value::Array(vec![v]))
            }
            _ => Value::String("x".repeat(1 + self.rng.below(1 << 14))),
        }
    }
}

/// Every string and object key in `v`.
fn collect_words(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_words(x, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push(k.clone());
            collect_words(x, out);
        }),
        _ => {}
    }
}

/// Number of values in `v`, itself included.
fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(m) => m.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Applies `edit` to the `target`-th value of `v` in pre-order (`seen` counts the values
/// passed).
fn edit_node(v: &mut Value, target: usize, seen: &mut usize, edit: &mut dyn FnMut(&mut Value)) {
    if *seen == target {
        *seen += 1;
        return edit(v);
    }
    *seen += 1;
    match v {
        Value::Array(a) => a.iter_mut().for_each(|x| edit_node(x, target, seen, edit)),
        Value::Object(m) => m
            .values_mut()
            .for_each(|x| edit_node(x, target, seen, edit)),
        _ => {}
    }
}
