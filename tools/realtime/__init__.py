"""The real-time pipeline behind `python -m selecsls.tools.demo`: frames in, tracked people out.

- `sources.py`: camera, video file, image folder or one image, with read-ahead;
- `loading.py`: a pose checkpoint (PyTorch) or an exported ONNX file into an estimator;
- `runtime.py`: frame -> network input -> raw outputs -> people (PyTorch or onnxruntime);
- `pose3d.py`: XNect Stage I read-out or Stage II lifting, then absolute placement;
- `tracking.py`: identities across frames and One-Euro keypoint smoothing;
- `app.py`: the frame loop (read, infer, track, draw, show or write), pipelined in threads;
- `outputs.py`: the annotated video and the per-frame JSON, written atomically.

Drawing is in `selecsls.tools.visualization`, shared with the engine's TensorBoard previews.
"""
