"""Streaming chat through the fleet with herd_mesh.Client: the answer prints as it is written, from whichever Mac
has the model loaded and the least to do.

    python client_chat_stream.py [MODEL] [QUESTION...]
"""

import sys

import herd_mesh

model = sys.argv[1] if len(sys.argv) > 1 else "llama3.2"
question = " ".join(sys.argv[2:]) or "Why is the sky blue? Two sentences."

with herd_mesh.Client() as herd:
    try:
        stream = herd.chat(model, [{"role": "user", "content": question}], stream=True, temperature=0.7)
        with stream:
            for text in stream:
                print(text, end="", flush=True)
    except herd_mesh.HerdError as exc:
        sys.exit(f"chat failed: {exc}")
print(f"\n[answered by {stream.node}: {stream.done_reason}]")
