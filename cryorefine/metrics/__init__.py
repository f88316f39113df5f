"""Offline realism metrics for sets of paired images (fake, raw and optionally the clean sim).

No metric downloads weights; nothing here is FID. See docs for what each number means. One module
per kind of metric; `config` holds their settings and imports without torch.
"""
