#include "vmwp/storage_config.h"

#include <fcntl.h>

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/fd_passing.h"
#include "base/scoped_fd.h"
#include "vmwp/vsp/storage/nbd_backend.h"
#include "vmwp/vsp/storage/uring_backend.h"

namespace vmwp {
namespace {

using hvstack::internal::WorkerDisk;

std::string DiskName(const WorkerDisk& d) {
  return d.display_name().empty() ? absl::StrCat("fd ", d.fd())
                                  : d.display_name();
}

// BACKEND_NBD: asks vmms, on the socket pair it handed over, for the
// connection to the disk's NBD server (one byte), and receives it (or vmms's
// reason why not). Asked only now, right before the handshake: qemu-nbd drops
// a client that does not finish it within 10 s of connecting.
absl::StatusOr<base::ScopedFd> RequestNbdConnection(const std::string& name,
                                                    int rendezvous) {
  const std::string what = absl::StrCat("disk ", name, ": ");
  if (absl::Status s = base::SendWithFds(rendezvous, "c", {}); !s.ok()) {
    return absl::UnavailableError(absl::StrCat(
        what, "cannot ask vmms for the NBD connection: ", s.message()));
  }
  absl::StatusOr<base::ReceivedMessage> reply =
      base::ReceiveWithFds(rendezvous, 512);
  if (!reply.ok()) {
    return absl::UnavailableError(absl::StrCat(
        what, "no NBD connection from vmms: ", reply.status().message()));
  }
  if (reply->fds.size() != 1) {
    return absl::UnavailableError(absl::StrCat(
        what, "no NBD connection from vmms: ",
        reply->bytes.empty() ? "vmms closed the socket" : reply->bytes));
  }
  return std::move(reply->fds[0]);
}

absl::StatusOr<std::unique_ptr<vsp::storage::BlockBackend>> OpenBackend(
    const WorkerDisk& d, base::ScopedFd fd) {
  const std::string name = DiskName(d);
  switch (d.backend()) {
    case WorkerDisk::BACKEND_RAW_FILE: {
      const int flags = ::fcntl(fd.get(), F_GETFL);
      if (flags < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "disk ", name, ": descriptor ", d.fd(), " is not open"));
      }
      if (!d.read_only() && (flags & O_ACCMODE) == O_RDONLY) {
        return absl::InvalidArgumentError(absl::StrCat(
            "disk ", name, ": writable disk handed over read-only (fd ", d.fd(),
            " is O_RDONLY)"));
      }
      auto b = vsp::storage::UringFileBackend::Create(
          std::move(fd), {.name = name,
                          .size_bytes = d.size_bytes(),
                          .read_only = d.read_only()});
      if (!b.ok()) return b.status();
      return std::unique_ptr<vsp::storage::BlockBackend>(*std::move(b));
    }
    case WorkerDisk::BACKEND_NBD: {
      if (d.nbd_export_name().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("disk ", name, ": NBD disk without an export name"));
      }
      absl::StatusOr<base::ScopedFd> socket =
          RequestNbdConnection(name, fd.get());
      if (!socket.ok()) return socket.status();
      fd.reset();
      auto b = vsp::storage::NbdBackend::Create(
          *std::move(socket), {.name = name,
                               .export_name = d.nbd_export_name(),
                               .size_bytes = d.size_bytes(),
                               .read_only = d.read_only()});
      if (!b.ok()) return b.status();
      return std::unique_ptr<vsp::storage::BlockBackend>(*std::move(b));
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("disk ", name, ": no backend (raw file or NBD) set"));
  }
}

}  // namespace

vmbus::Guid StorageControllerInstance(uint32_t number) {
  // "hvst" "ac" "k" 0x53 ('S') + the controller number.
  return vmbus::Guid::FromFields(
      0x68767374, 0x6163, 0x6b53,
      {0x80, 0x53, 0, 0, static_cast<uint8_t>(number >> 24),
       static_cast<uint8_t>(number >> 16), static_cast<uint8_t>(number >> 8),
       static_cast<uint8_t>(number)});
}

absl::StatusOr<StorageControllers> BuildStorageControllers(
    const google::protobuf::RepeatedPtrField<WorkerDisk>& disks,
    vmbus::GuestPages& memory, uint32_t vp_count,
    std::function<absl::StatusOr<uint32_t>(vmbus::Vsp*)> add_channel) {
  // Own every descriptor first, so that all are closed on any error.
  std::vector<base::ScopedFd> fds;
  for (const WorkerDisk& d : disks) fds.emplace_back(d.fd());
  std::map<uint32_t, std::vector<vsp::storage::StorageController::Lun>> luns;
  for (int i = 0; i < disks.size(); ++i) {
    const WorkerDisk& d = disks[i];
    const std::string name = DiskName(d);
    if (d.fd() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("disk ", name, ": no descriptor"));
    }
    if (d.target() > 255 || d.lun() > 255) {
      return absl::InvalidArgumentError(absl::StrCat(
          "disk ", name, ": SCSI target ", d.target(), " lun ", d.lun(),
          " (Linux's storvsc scans targets 0-1, LUNs 0-254)"));
    }
    auto backend = OpenBackend(d, std::move(fds[i]));
    if (!backend.ok()) return backend.status();
    vsp::storage::StorageController::Lun lun;
    lun.target = static_cast<uint8_t>(d.target());
    lun.lun = static_cast<uint8_t>(d.lun());
    lun.backend = *std::move(backend);
    lun.properties.block_size =
        d.logical_block_size() == 0 ? 512 : d.logical_block_size();
    lun.properties.read_only = d.read_only();
    lun.properties.serial = d.serial();
    luns[d.controller()].push_back(std::move(lun));
  }
  StorageControllers out;
  for (auto& [number, list] : luns) {
    auto c = vsp::storage::StorageController::Create(
        memory,
        {.instance = StorageControllerInstance(number),
         .vp_count = vp_count,
         .add_channel = add_channel},
        std::move(list));
    if (!c.ok()) {
      return absl::Status(
          c.status().code(),
          absl::StrCat("SCSI controller ", number, ": ", c.status().message()));
    }
    out.numbers.push_back(number);
    out.controllers.push_back(*std::move(c));
  }
  return out;
}

}  // namespace vmwp
