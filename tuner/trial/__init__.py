"""The LLM trial: data (token memmaps), the model, the training loop and its optimizer, checkpoints, the parallel
strategies (DDP, FSDP2) and the Ray Train workers of a sharded trial, and the Tune trainable around them
(``tuner.trial.entry.train_llm``). Torch and transformers are imported here; the spec layer below is not."""
