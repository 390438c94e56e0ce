#include "vmwp/saved_config.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace vmwp {
namespace {

using hvstack::internal::WorkerConfig;
using hvstack::saved::SavedConfig;

absl::Status Differs(absl::string_view field, const std::string& saved,
                     const std::string& now) {
  return absl::FailedPreconditionError(absl::StrCat(
      field, ": the saved VM had ", saved, ", its configuration now says ", now,
      "; change it back or discard the saved state"));
}

std::string DiskName(const SavedConfig::Disk& d) {
  return absl::StrFormat("disk %d:0:%d:%d", d.controller(), d.target(),
                         d.lun());
}

}  // namespace

SavedConfig SavedConfigOf(const WorkerConfig& config) {
  SavedConfig out;
  out.set_vcpus(config.vcpus());
  out.set_memory_mib(config.memory_mib());
  out.set_enlightened(config.enlightened());
  for (const auto& d : config.disks()) {
    SavedConfig::Disk* s = out.add_disks();
    s->set_controller(d.controller());
    s->set_target(d.target());
    s->set_lun(d.lun());
    s->set_size_bytes(d.size_bytes());
    s->set_read_only(d.read_only());
    s->set_logical_block_size(d.logical_block_size());
  }
  for (const auto& n : config.nics()) {
    SavedConfig::Nic* s = out.add_nics();
    s->set_index(n.index());
    s->set_mac(n.mac());
  }
  return out;
}

absl::Status CheckSavedConfig(const SavedConfig& saved,
                              const WorkerConfig& config) {
  const SavedConfig now = SavedConfigOf(config);
  if (saved.vcpus() != now.vcpus()) {
    return Differs("vcpus", absl::StrCat(saved.vcpus()),
                   absl::StrCat(now.vcpus()));
  }
  if (saved.memory_mib() != now.memory_mib()) {
    return Differs("memory", absl::StrCat(saved.memory_mib(), " MiB"),
                   absl::StrCat(now.memory_mib(), " MiB"));
  }
  if (saved.enlightened() != now.enlightened()) {
    return Differs("enlightenments",
                   saved.enlightened() ? "them on" : "them off",
                   now.enlightened() ? "on" : "off");
  }
  if (saved.disks_size() != now.disks_size()) {
    return Differs("disks", absl::StrCat(saved.disks_size(), " disk(s)"),
                   absl::StrCat(now.disks_size()));
  }
  for (int i = 0; i < saved.disks_size(); ++i) {
    const SavedConfig::Disk& a = saved.disks(i);
    const SavedConfig::Disk& b = now.disks(i);
    if (a.controller() != b.controller() || a.target() != b.target() ||
        a.lun() != b.lun()) {
      return Differs(absl::StrCat("disk ", i), DiskName(a), DiskName(b));
    }
    if (a.size_bytes() != b.size_bytes()) {
      return Differs(absl::StrCat(DiskName(a), " size"),
                     absl::StrCat(a.size_bytes(), " bytes"),
                     absl::StrCat(b.size_bytes(), " bytes"));
    }
    if (a.read_only() != b.read_only() ||
        a.logical_block_size() != b.logical_block_size()) {
      return Differs(
          absl::StrCat(DiskName(a), " read-only / block size"),
          absl::StrCat(a.read_only(), " / ", a.logical_block_size()),
          absl::StrCat(b.read_only(), " / ", b.logical_block_size()));
    }
  }
  if (saved.nics_size() != now.nics_size()) {
    return Differs("network adapters", absl::StrCat(saved.nics_size()),
                   absl::StrCat(now.nics_size()));
  }
  for (int i = 0; i < saved.nics_size(); ++i) {
    if (saved.nics(i).index() != now.nics(i).index() ||
        saved.nics(i).mac() != now.nics(i).mac()) {
      return Differs(absl::StrCat("network adapter ", i, " (index / MAC)"),
                     absl::StrCat(saved.nics(i).index(), " / ",
                                  absl::BytesToHexString(saved.nics(i).mac())),
                     absl::StrCat(now.nics(i).index(), " / ",
                                  absl::BytesToHexString(now.nics(i).mac())));
    }
  }
  return absl::OkStatus();
}

}  // namespace vmwp
