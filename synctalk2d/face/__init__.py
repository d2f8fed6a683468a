"""Faces: 68-point landmarks (detect + track + smooth), crop geometry, and blending back."""
