"""gpumesh's model store runtime: the model directory format, a tiny character-level model, and its
OpenAI-compatible Ray Serve application. See README.md beside this file."""
