"""Units used across the package, defined once."""

GIB = 1024**3  # bytes in a gigabyte as memory figures count it (psutil, Ollama sizes)
DAY_S = 86400.0  # seconds in a day
