"""A run's images: from the user's folders (or the embedded demo) to a trial's batches.

    folders -> scan, validate, split -> manifest (hash) -> decoded splits -> DataLoaders

- `manifest`: the split manifest (no torch): which image is in which split by content hash, the
  duplicates those hashes reveal, and which split a results folder already holds.
- `scan`: walking a user's folders: class folders, split-folder names, the layout, what is left out.
- `folders`: a user's folders -> a validated split manifest.
- `images`: decoding an image once (EXIF, RGB, size cap), and validating a file.
- `dataset`: a trial's decoded splits, the train/eval transforms and the DataLoaders.
- `demo`: the embedded default data set with its synthetic OOD shift, and `prepare_data`, the
  CLIs' choice between the user's folders and it.
"""
