"""PyTorch's training step on a prune checkpoint, as `prune bench --train` times it: forward in
train mode (dropout on), cross-entropy loss, backward, no optimizer; random ids (the second half
of each sequence is segment 1), labels 0, 1, 0, ... (0.5 for regression); THREADS threads; with PRECISION bf16
the forward and loss run under CPU autocast to bfloat16 (PyTorch's mixed precision). Prints the median milliseconds
per step as JSON. Usage: python train_step.py MODEL_DIR BATCH SEQ THREADS SECONDS [f32|bf16]"""
import json
import statistics
import sys
import time

import torch
from transformers import BertForSequenceClassification

model_dir, batch, seq, threads, seconds = sys.argv[1], *map(int, sys.argv[2:5]), float(sys.argv[5])
bf16 = len(sys.argv) > 6 and sys.argv[6] == "bf16"
torch.set_num_threads(threads)
model = BertForSequenceClassification.from_pretrained(model_dir).train()
generator = torch.Generator().manual_seed(0)
ids = torch.randint(1000, model.config.vocab_size, (batch, seq), generator=generator)
types = torch.zeros_like(ids)
types[:, seq // 2 :] = 1
if model.config.num_labels == 1:
    labels = torch.full((batch,), 0.5)
else:
    labels = torch.arange(batch) % model.config.num_labels


def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=types, labels=labels).loss
    loss.backward()
    model.zero_grad(set_to_none=True)


step()
times = []
start = time.perf_counter()
while len(times) < 3 or (time.perf_counter() - start < seconds and len(times) < 50):
    clock = time.perf_counter()
    step()
    times.append(time.perf_counter() - clock)
print(json.dumps({"version": torch.__version__, "median_ms": statistics.median(times) * 1e3}))
