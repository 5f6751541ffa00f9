"""One module per engine: `mflux_cli` (mflux's command line), `mflux_resident` (a worker process that keeps an
mflux model loaded), later Ollama and Whisper. Image engines share the interface in `base`."""
