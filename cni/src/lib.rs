//! The zonewarden CNI plugin as a library: netns switching and the routed-veth link layer.
pub mod link;
pub mod netns;
