//! # Squeeze-SegNet on Burn
//!
//! Squeeze-SegNet (G. Nanfack, A. Elhassouny, R. Oulad Haj Thami, *Squeeze-SegNet: a new fast
//! deep convolutional neural network for semantic segmentation*, ICMV 2017,
//! <https://arxiv.org/abs/1711.05491>) is an encoder–decoder network for per-pixel
//! classification with 2.7 M parameters: a SqueezeNet 1.1 encoder, a decoder of "DFire"
//! modules that mirror it, and SegNet's max-unpooling with the encoder's pooling indices.
//!
//! ```text
//! [n,3,H,W] conv1 ─ pool1 ─ fire2 fire3 ─ pool3 ─ fire4 fire5 ─ pool5 ─ fire6…fire9 conv10
//!                     │idx                  │idx                  │idx
//!           deconv1 ─ unpool ─ dfire2 dfire3 ─ unpool ─ dfire4 dfire5 ─ unpool ─ dfire6…dfire9 conv10_d
//! → logits [n, num_classes, H, W]
//! ```
//!
//! The same model code runs on every Burn backend the crate is built with — NdArray, Flex
//! (CPU) and WGPU (GPU, or Mesa's software Vulkan) — picked by the [`Device`](burn::tensor::Device).
//! Max-pooling with indices and max-unpooling are this crate's own backend-extension ops
//! ([`ops`]), with a kernel per backend and hand-written gradients.
//!
//! ## Fast inference on the CPU
//! On NdArray and Flex without autodiff, every convolution + bias + ReLU, every Fire module's
//! expand stage and every whole DFire module run as fused kernels of this crate ([`fused`]:
//! row blocks of im2col and a GEMM written straight into the NCHW output), once batch norm is
//! folded with [`SqueezeSegNet::for_inference`]. In training, the convolutions on NdArray
//! and Flex run on the same kernels with this crate's gradients ([`fused::conv2d_train`]). WGPU
//! uses Burn's own ops, which the tests compare both paths with. Call [`retain_freed_memory`] (and [`flush_subnormals`]) once at start-up so the
//! C allocator reuses the large activation buffers instead of mapping fresh pages per layer.
//! Measured timings, with their machines and commands, are in `BENCHMARKS.md`.
//!
//! ## Segment a batch on the CPU
//! ```
//! use burn::prelude::*;
//! use squeeze_segnet::{SqueezeSegNetConfig, BackendKind};
//!
//! let device = BackendKind::Flex.device()?;
//! let model = SqueezeSegNetConfig::paper_with_batch_norm().with_num_classes(11).init(&device)?;
//! let images = Tensor::<4>::random([2, 3, 64, 80], burn::tensor::Distribution::Default, &device);
//! let logits = model.forward(images.clone())?;          // [2, 11, 64, 80]
//! let classes = model.segment(images)?;                 // [2, 64, 80], values 0..11
//! assert_eq!(logits.dims(), [2, 11, 64, 80]);
//! assert_eq!(classes.dims(), [2, 64, 80]);
//!
//! // Inputs below the minimum size are an error, not a panic.
//! let tiny = Tensor::<4>::zeros([1, 3, 16, 16], &device);
//! assert!(model.forward(tiny).is_err());
//! # Ok::<(), squeeze_segnet::SegNetError>(())
//! ```
//!
//! ## The shipped CamVid weights
//! [`SqueezeSegNet::pretrained_camvid`] loads weights trained on CamVid's 11 classes (train and
//! val splits, the encoder started from SqueezeNet 1.1's ImageNet weights, [`imagenet`]; the
//! README has every stage's command and scores) for [`SqueezeSegNetConfig::camvid`]:
//! the paper's layers with batch norm, a pyramid pooling context after conv10
//! ([`SqueezeSegNetConfig::context`]) and a 3×3 refinement after the last unpooling
//! ([`SqueezeSegNetConfig::refine`]). For fast inference, fold batch norm into the convolutions
//! with [`SqueezeSegNet::for_inference`].
//!
//! ```no_run
//! use burn::prelude::*;
//! use squeeze_segnet::SqueezeSegNet;
//! let model = SqueezeSegNet::pretrained_camvid(&Device::flex())?.for_inference();
//! # Ok::<(), squeeze_segnet::SegNetError>(())
//! ```
//!
//! ## Layout
//! - [`SqueezeSegNetConfig`], [`config`]: options and every layer width, in one place;
//! - [`Fire`], [`DFire`], [`ConvBlock`]: the building blocks; [`SqueezeSegNet`]: the network;
//! - [`ops`]: pooling with indices and unpooling as backend-extension ops;
//! - [`fused`]: the CPU inference path (fused convolution + bias + ReLU, Fire, DFire);
//! - [`retain_freed_memory`]: the allocator setting the examples and benchmarks use;
//!   [`flush_subnormals`]: the floating-point mode they use (subnormal numbers as zero: fast
//!   on x86 with weights that decayed to almost nothing);
//! - [`deconv`]: the final transposed convolution as four ordinary convolutions;
//! - [`ModelSummary`]: per-layer shapes, parameters and multiply-accumulates;
//! - inference at any size: [`segment_photo`] (a photo in, its classes at its own size out),
//!   [`photo_input`] / [`normalize_image`] (a photo as the network's input, [`CAMVID_MEAN`],
//!   [`CAMVID_STD`]), [`predict_at`] (a batch, classes at the labels' size, optional
//!   [`TestTimeAugmentation`]: rescaled and mirrored passes), [`predict_full_size`] (one image at its own size, one byte a
//!   pixel); pictures: [`colorize`] (with [`CAMVID_PALETTE`]; [`CAMVID_CLASSES`]), [`overlay`],
//!   [`side_by_side`];
//! - weights: [`SavedModel`] (a weights file with its network's `model.json` and validation
//!   size beside it), [`SqueezeSegNet::save`], [`SqueezeSegNet::load`],
//!   [`SqueezeSegNet::pretrained_camvid`]; [`Precision`]: files in f16 or int8
//!   ([`SqueezeSegNet::save_as`]); [`pytorch`]: safetensors in PyTorch's names
//!   ([`SqueezeSegNet::save_pytorch`]; [`SqueezeSegNet::load`] reads them by extension);
//!   [`imagenet`]: SqueezeNet 1.1's ImageNet weights as the encoder's starting point
//!   ([`SqueezeSegNet::with_imagenet_encoder`], [`ImageNetEncoder`]);
//! - [`BackendKind`]: pick a backend by name, with a clear error when WGPU has no adapter.
#![warn(missing_docs)]

mod allocator;
pub mod config;
mod context;
mod conv;
pub mod deconv;
mod device;
mod dfire;
mod error;
mod fire;
mod fold;
pub mod fused;
mod host;
pub mod imagenet;
mod input;
mod model;
pub mod ops;
mod params;
mod precision;
mod predict;
pub mod pytorch;
mod saved;
mod simd;
mod subnormals;
mod summary;
mod tta;
mod visualize;
mod weights;

pub use allocator::{RETAINED_BLOCK_LIMIT, RETAINED_FREE_LIMIT, retain_freed_memory};
pub use config::{SqueezeSegNetConfig, min_input_len};
pub use context::{PyramidContext, PyramidContextConfig};
pub use conv::{ConvBlock, ConvBlockConfig};
pub use device::{BackendKind, check_burn_device_env};
pub use dfire::{DFire, DFireConfig};
pub use error::{OpError, SegNetError};
pub use fire::{Fire, FireConfig};
pub use imagenet::{ImageNetEncoder, imagenet_encoder_path};
pub use input::{
    CAMVID_CLASSES, CAMVID_MEAN, CAMVID_PALETTE, CAMVID_STD, MAX_IMAGE_SIDE, normalize_image,
    photo_input,
};
pub use model::SqueezeSegNet;
pub use params::{map_float_params, num_trainable_params, visit_float_params};
pub use precision::{PRECISION_KEY, Precision, weights_precision};
pub use predict::{
    logits, predict_at, predict_full_size, segment_photo, upsample_argmax, upsample_logits,
};
pub use saved::{MODEL_FILE, RUN_FILE, SavedModel, json_with_defaults, load_json_with_defaults};
pub use simd::{SIMD_ENV, check_simd_env};
pub use subnormals::flush_subnormals;
pub use summary::{LayerSummary, ModelSummary};
pub use tta::{MULTI_SCALES, TestTimeAugmentation};
pub use visualize::{colorize, overlay, side_by_side};
pub use weights::{camvid_int8_weights_path, camvid_weights_path, weights_path};
