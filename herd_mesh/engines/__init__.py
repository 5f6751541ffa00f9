"""One module per engine: `mflux_cli` (mflux's command line), `mflux_resident` (a worker process that keeps an
mflux model loaded), `ollama` (this Mac's Ollama, for chat and embeddings) and `whisper` (speech-to-text with
faster-whisper or mlx-whisper). Image engines share the interface in `base`."""
