"""Domain library of the sarcopenia app: muscle segmentation and L3 body composition on CT.

Pure numpy/scipy; nothing here imports MONAI Label, so it can be used and tested alone.
"""
