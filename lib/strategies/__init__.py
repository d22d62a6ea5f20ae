"""Active-learning strategies of the app: which image an annotator gets next."""
