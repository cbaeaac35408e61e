//! Everything that can be wrong with data on disk, each case naming the file.

use std::path::PathBuf;

/// A data error: the message names the file (and the line or pixel) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The dataset root does not exist or is not a folder.
    #[error("dataset root {0} does not exist or is not a folder")]
    MissingRoot(PathBuf),
    /// A split has neither a list file nor image and label folders.
    #[error(
        "split '{split}' not found in {root}: expected {split}.txt or the folders {split}/ and {split}annot/"
    )]
    MissingSplit {
        /// Dataset root.
        root: PathBuf,
        /// Split name.
        split: String,
    },
    /// A line of a list file is not `<image path> <label path>`.
    #[error("{list}:{line}: expected '<image path> <label path>', found '{content}'")]
    MalformedListLine {
        /// The list file.
        list: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line as read.
        content: String,
    },
    /// A file named by a list file, or expected beside an image, does not exist.
    #[error("{path} does not exist{}", .named_by.as_ref().map(|(l, n)| format!(" (named by {}:{n})", l.display())).unwrap_or_default())]
    MissingFile {
        /// The missing file.
        path: PathBuf,
        /// The list file and 1-based line that named it, if any.
        named_by: Option<(PathBuf, usize)>,
    },
    /// A file could not be read or decoded (unreadable, truncated, not an image).
    #[error("cannot decode {path}: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },
    /// An image and its mask differ in size.
    #[error("{image} is {image_size:?} (width, height) but its mask {mask} is {mask_size:?}")]
    SizeMismatch {
        /// The image file.
        image: PathBuf,
        /// The mask file.
        mask: PathBuf,
        /// Image `(width, height)`.
        image_size: (u32, u32),
        /// Mask `(width, height)`.
        mask_size: (u32, u32),
    },
    /// A mask holds a value that is neither a class (`0..num_classes`) nor the ignore value.
    #[error(
        "{path}: pixel (x={x}, y={y}) has label {value}, but labels must be 0..{num_classes} or {ignore} (ignored)"
    )]
    LabelOutOfRange {
        /// The mask file.
        path: PathBuf,
        /// The label found.
        value: u32,
        /// Column.
        x: u32,
        /// Row.
        y: u32,
        /// Number of classes.
        num_classes: usize,
        /// The ignore value.
        ignore: u8,
    },
    /// A mask's pixel format does not fit the configured encoding.
    #[error("{path}: mask is {found}, expected {expected}")]
    MaskFormat {
        /// The mask file.
        path: PathBuf,
        /// Pixel format found.
        found: String,
        /// What the encoding expects.
        expected: &'static str,
    },
    /// A colour mask holds a colour that is not in the palette.
    #[error("{path}: pixel (x={x}, y={y}) has colour {colour:?}, which is not in the palette")]
    UnknownColour {
        /// The mask file.
        path: PathBuf,
        /// The RGB colour found.
        colour: [u8; 3],
        /// Column.
        x: u32,
        /// Row.
        y: u32,
    },
    /// A split with no image at all.
    #[error("split '{split}' in {root} holds no images")]
    EmptySplit {
        /// Dataset root.
        root: PathBuf,
        /// Split name.
        split: String,
    },
    /// An image without a mask of the same stem (folder datasets, or splits without list files).
    #[error("{image} has no mask: expected {expected}")]
    Unpaired {
        /// The image file.
        image: PathBuf,
        /// The mask path looked for.
        expected: PathBuf,
    },
    /// An invalid option (sizes, probabilities, class counts).
    #[error("invalid option: {0}")]
    Config(String),
    /// A loader thread stopped before producing every batch (it panicked).
    #[error("the data loader stopped after {produced} of {expected} batches: {reason}")]
    LoaderFailed {
        /// Batches received.
        produced: usize,
        /// Batches the epoch has.
        expected: usize,
        /// The panic message, when there was one.
        reason: String,
    },
    /// An I/O error on a file or folder.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
