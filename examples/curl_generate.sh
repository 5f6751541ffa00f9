#!/bin/sh
# The seed's curl examples, unchanged. Run against any peer of the mesh (here: the one on localhost).
set -e

# mflux image generation via fleet router
curl -o mflux_output.png http://localhost:11435/api/generate-image \
-H "Content-Type: application/json" \
-d '{
"model": "z-image-turbo",
"prompt": "a neon-lit Tokyo alley at midnight, cyberpunk aesthetic",
"width": 1024,
"height": 1024,
"steps": 4,
"quantize": 8
}'

# mflux image generation with request tags
curl -o mflux_output_tagged.png http://localhost:11435/api/generate-image \
-H "Content-Type: application/json" \
-d '{
"model": "z-image-turbo",
"prompt": "your prompt for mflux image generation",
"metadata": {"tags": ["mflux-project", "mflux-content-gen"]}
}'

# mflux image generation stats (last 24h)
curl -s http://localhost:11435/dashboard/api/image-stats | python3 -m json.tool
# Fleet health (includes mflux image generation activity)
curl -s http://localhost:11435/dashboard/api/health | python3 -m json.tool
