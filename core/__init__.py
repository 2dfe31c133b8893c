"""Pure torch/numpy core of the comfyui-ifadapter node pack (never imports ComfyUI)."""
