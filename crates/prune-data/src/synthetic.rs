//! A synthetic classification task for tests and smoke runs: random token sequences whose
//! label says whether a marker token occurs (learnable by a tiny model in a few steps).

use crate::batching::Encoded;
use crate::dataset::Label;
use prune_tensor::rng::Rng;

/// `n` sequences of up to 11 random tokens from `3..vocab` (without `marker`), with `marker`
/// written over one token of every other one, wrapped in `1 … 2` ([CLS] … [SEP] stand-ins); the label is 1
/// when `marker` occurs. Deterministic in `seed`.
pub fn marker_task(n: usize, vocab: u32, marker: u32, seed: u64) -> Vec<Encoded> {
    let mut rng = Rng::new(seed);
    let span = vocab.saturating_sub(3).max(1) as usize;
    (0..n)
        .map(|i| {
            let len = 4 + rng.below(8);
            let mut ids: Vec<u32> = (0..len).map(|_| 3 + rng.below(span) as u32).collect();
            ids.retain(|&t| t != marker);
            if i % 2 == 0 {
                let at = rng.below(ids.len());
                match ids.get_mut(at) {
                    Some(t) => *t = marker,
                    None => ids.push(marker),
                }
            }
            ids.insert(0, 1);
            ids.push(2);
            Encoded {
                type_ids: vec![0; ids.len()],
                label: Label::Class(usize::from(ids.contains(&marker))),
                ids,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_say_whether_the_marker_occurs() {
        let data = marker_task(50, 20, 7, 1);
        assert_eq!(data, marker_task(50, 20, 7, 1));
        for e in &data {
            assert_eq!(e.label, Label::Class(usize::from(e.ids.contains(&7))));
            assert!(e.ids.iter().all(|&t| t < 20) && e.ids[0] == 1 && *e.ids.last().unwrap() == 2);
        }
        assert_eq!(
            data.iter().filter(|e| e.label == Label::Class(1)).count(),
            25
        );
    }
}
