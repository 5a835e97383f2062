"""Ray graphs that compose the stages (build, relabel, audit), shard writers, and the CLI."""
