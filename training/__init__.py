"""Readers over the corpus shards, the Video2Roll-style model, train and eval loops."""
