"""Preprocessing as pure functions shared by offline preprocessing and inference."""
