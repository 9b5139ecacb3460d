"""ffmpeg, run safely: find the binary, probe a clip, re-encode it to fit a size. Imports nothing of the
project, so services (delivery) and providers (the preview renderer) can both use it."""
