"""The corpus contract, the ground floor every other folder stands on; it imports nothing of ours.

- `vocab`: statuses, drop reasons, error classes, and the one failure exception;
- `records`: the Arrow schemas and rows (video, frame, label, fetch);
- `layout`: every path of a corpus, its work state and the download cache;
- `config`: the typed configuration (frames, fetch, labeler, shards, build), written whole
  into corpus.json and read back whole;
- `meta`: reading and writing corpus.json;
- `atomic`, `hashing`, `threads`, `piano`: files that appear only complete, content
  hashes, the per-task thread budget, the 88-key geometry;
- `extras`: what to install when an optional package (torch, a labeler) is missing.
"""
