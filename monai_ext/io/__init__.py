"""Every file reader and writer: image decoding, checkpoint files, figures, DICOM/NIfTI writers, one atomic write.

The lowest layer: it imports nothing else from ``monai_ext``.
"""

from __future__ import annotations
