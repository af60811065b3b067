//! One netlink connection per call, on a thread of its own (in the caller's namespace
//! or in a pod's), and link lookups.
//!
//! A new thread inherits the network namespace of the thread that spawns it, so running
//! the connection on a scoped thread keeps the caller's namespace while never nesting a
//! tokio runtime inside the caller's.

use std::future::Future;
use std::path::Path;

use futures::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};

use super::error::{LinkError, is_errno};
use crate::netns::run_in_netns;

/// Runs `work` with a fresh netlink handle in the calling thread's network namespace.
pub(crate) fn with_handle<T, F, Fut>(work: F) -> Result<T, LinkError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, LinkError>>,
{
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("zw-netlink".to_owned())
            .spawn_scoped(scope, move || on_this_thread(work))
            .map_err(|source| LinkError::Runtime { source })?;
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs `work` with a fresh netlink handle on a thread inside the network namespace
/// at `netns` (one thread: it enters the namespace and runs the connection).
pub(crate) fn with_handle_in<T, F, Fut>(netns: &Path, work: F) -> Result<T, LinkError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, LinkError>>,
{
    run_in_netns(netns, move || on_this_thread(work))?
}

/// A current-thread runtime and one connection on the calling thread, which must not
/// be inside another runtime.
fn on_this_thread<T, F, Fut>(work: F) -> Result<T, LinkError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, LinkError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|source| LinkError::Runtime { source })?;
    runtime.block_on(async move {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| LinkError::Runtime { source })?;
        let driver = tokio::spawn(connection);
        let result = work(handle).await;
        driver.abort();
        result
    })
}

/// The link called `name`, or `None` when there is none.
pub(crate) async fn find_link(
    handle: &Handle,
    name: &str,
) -> Result<Option<LinkMessage>, LinkError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(err) if is_errno(&err, Errno::ENODEV) => Ok(None),
        Err(err) => Err(LinkError::netlink("look up link", name)(err)),
    }
}

/// Deletes the link called `name`; `false` when it was already absent.
pub(crate) async fn delete_link(handle: &Handle, name: &str) -> Result<bool, LinkError> {
    let Some(link) = find_link(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(link.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(err) if is_errno(&err, Errno::ENODEV) => Ok(false),
        Err(err) => Err(LinkError::netlink("delete link", name)(err)),
    }
}

/// The link's name attribute.
pub(crate) fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// The link's hardware address, empty when it has none.
pub(crate) fn link_mac(link: &LinkMessage) -> &[u8] {
    link.attributes
        .iter()
        .find_map(|attr| match attr {
            LinkAttribute::Address(mac) => Some(mac.as_slice()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Whether the link is administratively up.
pub(crate) fn link_is_up(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Up)
}

/// Whether the link is one end of a veth pair.
pub(crate) fn is_veth(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth))),
        _ => false,
    })
}

/// The kind of the link as the kernel names it (`veth`, `macvlan`, ...), if it says.
pub(crate) fn link_kind(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind.to_string()),
            _ => None,
        }),
        _ => None,
    })
}

/// The index of the bridge (or other controller) the link is a port of.
pub(crate) fn controller_index(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::Controller(index) => Some(*index),
        _ => None,
    })
}

/// The index of a veth end's peer (in the peer's namespace); `None` for other links.
pub(crate) fn peer_index(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::Link(index) => Some(*index),
        _ => None,
    })
}

/// The addresses on the link `index` (the dump is filtered by the kernel where it can,
/// and here again).
pub(crate) async fn link_addresses(
    handle: &Handle,
    index: u32,
    ifname: &str,
) -> Result<Vec<AddressMessage>, LinkError> {
    let messages: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(LinkError::netlink("list addresses", ifname))?;
    Ok(messages
        .into_iter()
        .filter(|msg| msg.header.index == index)
        .collect())
}
