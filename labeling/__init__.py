"""Audio-side stages: transcriber backends, note events -> frame-aligned rolls, MIDI I/O."""
