"""synctalk2d: learn a talking person from a short video, then lip-sync them to any speech.

Pipeline, one sub-package per stage: media I/O (``media``) -> face landmarks, crops and
blending (``face``) -> audio features (``audio``) -> networks (``models``) -> training
(``training``) -> rendering (``inference``). ``avatar`` defines the directory that carries
data from one stage to the next; ``cli`` is a thin command-line layer over all of it.
"""

__version__ = "0.1.0"
