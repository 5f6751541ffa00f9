"""Services: what this peer offers the mesh (images, LLMs, speech-to-text), each in front of its engine.

A service adds its section to the peer's state document and runs the work that lands here.
"""
