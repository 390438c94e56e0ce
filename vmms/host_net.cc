#include "vmms/host_net.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace vmms::hostnet {
namespace {

struct SockFree {
  void operator()(nl_sock* sk) const { nl_socket_free(sk); }
};
struct LinkPut {
  void operator()(rtnl_link* link) const { rtnl_link_put(link); }
};
struct CacheFree {
  void operator()(nl_cache* cache) const { nl_cache_free(cache); }
};
using Sock = std::unique_ptr<nl_sock, SockFree>;
using Link = std::unique_ptr<rtnl_link, LinkPut>;
using Cache = std::unique_ptr<nl_cache, CacheFree>;

absl::Status NetlinkError(int err, absl::string_view what) {
  const int code = err < 0 ? -err : err;
  std::string message = absl::StrCat(what, ": ", nl_geterror(code));
  switch (code) {
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
      return absl::NotFoundError(message);
    case NLE_PERM:
    case NLE_NOACCESS:
      return absl::PermissionDeniedError(
          absl::StrCat(message, " (vmms needs CAP_NET_ADMIN)"));
    case NLE_EXIST:
    case NLE_BUSY:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<Sock> Connect() {
  Sock sk(nl_socket_alloc());
  if (sk == nullptr) {
    return absl::ResourceExhaustedError("cannot allocate a netlink socket");
  }
  if (int err = nl_connect(sk.get(), NETLINK_ROUTE); err < 0) {
    return NetlinkError(err, "cannot open an rtnetlink socket");
  }
  return sk;
}

std::string OrEmpty(const char* s) { return s == nullptr ? "" : s; }

LinkInfo InfoOf(rtnl_link* link) {
  LinkInfo info;
  info.name = OrEmpty(rtnl_link_get_name(link));
  info.ifindex = rtnl_link_get_ifindex(link);
  info.kind = OrEmpty(rtnl_link_get_type(link));
  info.alias = OrEmpty(rtnl_link_get_ifalias(link));
  info.master_ifindex = rtnl_link_get_master(link);
  info.up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
  info.mtu = rtnl_link_get_mtu(link);
  return info;
}

// The link named `name` (nullptr when none).
absl::StatusOr<Link> GetLink(nl_sock* sk, const std::string& name) {
  rtnl_link* raw = nullptr;
  int err = rtnl_link_get_kernel(sk, 0, name.c_str(), &raw);
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return Link();
  if (err < 0) {
    return NetlinkError(err,
                        absl::StrCat("cannot look up interface '", name, "'"));
  }
  return Link(raw);
}

absl::StatusOr<std::string> NameOf(nl_sock* sk, int ifindex) {
  rtnl_link* raw = nullptr;
  if (int err = rtnl_link_get_kernel(sk, ifindex, nullptr, &raw); err < 0) {
    return NetlinkError(err,
                        absl::StrCat("cannot look up interface #", ifindex));
  }
  Link link(raw);
  return OrEmpty(rtnl_link_get_name(link.get()));
}

// The bridge's ifindex, or NOT_FOUND / FAILED_PRECONDITION saying why not.
absl::StatusOr<int> BridgeIndex(nl_sock* sk, const std::string& name) {
  absl::StatusOr<Link> link = GetLink(sk, name);
  if (!link.ok()) return link.status();
  if (*link == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "bridge '", name,
        "' does not exist in vmms's network namespace (create it, e.g. `ip "
        "link add ",
        name, " type bridge`)"));
  }
  const std::string kind = OrEmpty(rtnl_link_get_type(link->get()));
  if (kind != "bridge") {
    return absl::FailedPreconditionError(absl::StrCat(
        "interface '", name, "' is not a bridge (",
        kind.empty() ? "a device without a link kind" : "kind " + kind,
        "); adapters attach to a Linux bridge"));
  }
  return rtnl_link_get_ifindex(link->get());
}

}  // namespace

absl::StatusOr<std::optional<LinkInfo>> FindLink(const std::string& name) {
  absl::StatusOr<Sock> sk = Connect();
  if (!sk.ok()) return sk.status();
  absl::StatusOr<Link> link = GetLink(sk->get(), name);
  if (!link.ok()) return link.status();
  if (*link == nullptr) return std::nullopt;
  LinkInfo info = InfoOf(link->get());
  if (info.master_ifindex != 0) {
    absl::StatusOr<std::string> master = NameOf(sk->get(), info.master_ifindex);
    if (master.ok()) info.master = *master;
  }
  return info;
}

absl::StatusOr<std::vector<LinkInfo>> ListLinks() {
  absl::StatusOr<Sock> sk = Connect();
  if (!sk.ok()) return sk.status();
  nl_cache* raw = nullptr;
  if (int err = rtnl_link_alloc_cache(sk->get(), AF_UNSPEC, &raw); err < 0) {
    return NetlinkError(err, "cannot list network interfaces");
  }
  Cache cache(raw);
  std::vector<LinkInfo> links;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr;
       obj = nl_cache_get_next(obj)) {
    links.push_back(InfoOf(reinterpret_cast<rtnl_link*>(obj)));
  }
  for (LinkInfo& info : links) {
    if (info.master_ifindex == 0) continue;
    for (const LinkInfo& other : links) {
      if (other.ifindex == info.master_ifindex) info.master = other.name;
    }
  }
  return links;
}

absl::Status CheckBridge(const std::string& name) {
  absl::StatusOr<Sock> sk = Connect();
  if (!sk.ok()) return sk.status();
  return BridgeIndex(sk->get(), name).status();
}

absl::StatusOr<base::ScopedFd> CreateTap(const TapRequest& request) {
  if (request.name.empty() || request.name.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(
        absl::StrCat("TAP device name '", request.name, "' must be 1-",
                     IFNAMSIZ - 1, " characters"));
  }
  absl::StatusOr<Sock> sk = Connect();
  if (!sk.ok()) return sk.status();
  int bridge_index = 0;
  if (!request.bridge.empty()) {
    absl::StatusOr<int> index = BridgeIndex(sk->get(), request.bridge);
    if (!index.ok()) {
      return absl::FailedPreconditionError(index.status().message());
    }
    bridge_index = *index;
  }

  base::ScopedFd tap(::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK));
  if (!tap) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot open /dev/net/tun for TAP device '", request.name,
        "': ", std::strerror(errno), " (is the tun module loaded?)"));
  }
  struct ifreq ifr = {};
  std::memcpy(ifr.ifr_name, request.name.data(), request.name.size());
  // IFF_TUN_EXCL: never take over a persistent TAP device someone else made.
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL |
                  (request.vnet_hdr ? IFF_VNET_HDR : 0);
  if (::ioctl(tap.get(), TUNSETIFF, &ifr) != 0) {
    const int err = errno;
    std::string message = absl::StrCat("cannot create TAP device '",
                                       request.name, "': ", std::strerror(err));
    if (err == EPERM) {
      return absl::PermissionDeniedError(
          absl::StrCat(message, " (vmms needs CAP_NET_ADMIN)"));
    }
    if (err == EBUSY || err == EEXIST || err == EINVAL) {
      return absl::FailedPreconditionError(
          absl::StrCat(message, " (an interface of that name exists already)"));
    }
    return absl::InternalError(message);
  }
  if (request.vnet_hdr) {
    if (::ioctl(tap.get(), TUNSETOFFLOAD,
                static_cast<unsigned long>(request.offloads)) != 0) {
      return absl::InternalError(absl::StrCat(
          "TAP device '", request.name, "': TUNSETOFFLOAD 0x",
          absl::Hex(request.offloads), " failed: ", std::strerror(errno)));
    }
  }

  absl::StatusOr<Link> current = GetLink(sk->get(), request.name);
  if (!current.ok()) return current.status();
  if (*current == nullptr) {
    return absl::InternalError(absl::StrCat("TAP device '", request.name,
                                            "' vanished right after creation"));
  }
  Link changes(rtnl_link_alloc());
  if (changes == nullptr) {
    return absl::ResourceExhaustedError("cannot allocate a netlink request");
  }
  if (!request.alias.empty())
    rtnl_link_set_ifalias(changes.get(), request.alias.c_str());
  rtnl_link_set_mtu(changes.get(), request.mtu);
  if (bridge_index != 0) rtnl_link_set_master(changes.get(), bridge_index);
  rtnl_link_set_flags(changes.get(), IFF_UP);
  if (int err = rtnl_link_change(sk->get(), current->get(), changes.get(), 0);
      err < 0) {
    absl::Status s = NetlinkError(
        err,
        absl::StrCat("cannot set up TAP device '", request.name, "'",
                     request.bridge.empty()
                         ? ""
                         : absl::StrCat(" on bridge '", request.bridge, "'"),
                     " (mtu ", request.mtu, ")"));
    return absl::Status(
        absl::IsNotFound(s) ? absl::StatusCode::kFailedPrecondition : s.code(),
        s.message());
  }
  return tap;
}

absl::Status DeleteLink(const std::string& name) {
  absl::StatusOr<Sock> sk = Connect();
  if (!sk.ok()) return sk.status();
  Link link(rtnl_link_alloc());
  if (link == nullptr) {
    return absl::ResourceExhaustedError("cannot allocate a netlink request");
  }
  rtnl_link_set_name(link.get(), name.c_str());
  int err = rtnl_link_delete(sk->get(), link.get());
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return absl::OkStatus();
  if (err < 0) {
    return NetlinkError(err,
                        absl::StrCat("cannot remove interface '", name, "'"));
  }
  return absl::OkStatus();
}

}  // namespace vmms::hostnet
