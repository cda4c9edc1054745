"""The detector's accuracy table and speed (the statistics ship: backend.detect.accuracy)."""
