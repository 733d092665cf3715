"""Category identification: a vision-language model (Qwen3-VL in-process, or an OpenAI-compatible
endpoint) lists the object categories of each image, with boxes when asked → the detections table."""
