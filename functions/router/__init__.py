"""The router function (Pick): an OpenAI-compatible gateway that picks a (model, backend) per prompt."""
