"""Video-side stages: fetch, probe, keyboard location, rectification, frame filtering,
and the synthetic top-view piano videos the project is tested on."""
