"""The synthetic test bed: top-view piano videos with known truth, in the looks of real
footage (`video`, `looks`, `render`, `audio`), and the `synth://` source the demo
manifest fetches from (`source`, registered with fetch as an entry point)."""
