#include "vmms/disk_table.h"

#include "absl/strings/str_cat.h"

namespace vmms {
namespace {

using hvstack::v1::Disk;

constexpr char kDiskColumns[] =
    "vm_uuid, path, format, read_only, controller, target, lun, serial";

Disk DiskFromRow(const Statement& row) {
  Disk disk;
  disk.set_path(row.ColumnText(1));
  disk.set_format(DiskFormatFromName(row.ColumnText(2)));
  disk.set_read_only(row.ColumnInt64(3) != 0);
  disk.mutable_address()->set_controller(
      static_cast<uint32_t>(row.ColumnInt64(4)));
  disk.mutable_address()->set_target(static_cast<uint32_t>(row.ColumnInt64(5)));
  disk.mutable_address()->set_lun(static_cast<uint32_t>(row.ColumnInt64(6)));
  disk.set_serial(row.ColumnText(7));
  return disk;
}

}  // namespace

const char* DiskFormatName(hvstack::v1::DiskFormat format) {
  switch (format) {
    case hvstack::v1::DISK_FORMAT_RAW:
      return "raw";
    case hvstack::v1::DISK_FORMAT_QCOW2:
      return "qcow2";
    case hvstack::v1::DISK_FORMAT_VHDX:
      return "vhdx";
    default:
      return "unspecified";
  }
}

hvstack::v1::DiskFormat DiskFormatFromName(absl::string_view name) {
  if (name == "raw") return hvstack::v1::DISK_FORMAT_RAW;
  if (name == "qcow2") return hvstack::v1::DISK_FORMAT_QCOW2;
  if (name == "vhdx") return hvstack::v1::DISK_FORMAT_VHDX;
  return hvstack::v1::DISK_FORMAT_UNSPECIFIED;
}

std::string ScsiAddressText(const hvstack::v1::ScsiAddress& address) {
  return absl::StrCat(address.controller(), ":", address.target(), ":",
                      address.lun());
}

absl::Status AssignDiskAddress(const std::vector<Disk>& existing,
                               absl::string_view field, Disk* disk) {
  for (const Disk& other : existing) {
    if (other.path() == disk->path()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", disk->path(), " is attached already (at ",
                       ScsiAddressText(other.address()), ")"));
    }
  }
  if (existing.size() >= kMaxDisksPerVm) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": the VM has ", existing.size(),
                     " disks already, the most its SCSI controller holds"));
  }
  auto taken = [&](uint32_t lun) {
    for (const Disk& other : existing) {
      if (other.address().controller() == 0 && other.address().target() == 0 &&
          other.address().lun() == lun) {
        return true;
      }
    }
    return false;
  };
  if (disk->has_address()) {
    const hvstack::v1::ScsiAddress& a = disk->address();
    if (a.controller() != 0 || a.target() != 0 || a.lun() >= kMaxDisksPerVm) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".address ", ScsiAddressText(a),
          " is out of range: hvstack has controller 0, target 0, LUNs 0-",
          kMaxDisksPerVm - 1));
    }
    if (taken(a.lun())) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".address ", ScsiAddressText(a), " is taken by another disk"));
    }
    return absl::OkStatus();
  }
  for (uint32_t lun = 0; lun < kMaxDisksPerVm; ++lun) {
    if (taken(lun)) continue;
    disk->mutable_address()->set_controller(0);
    disk->mutable_address()->set_target(0);
    disk->mutable_address()->set_lun(lun);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": no free LUN on controller 0"));
}

absl::Status AppendDisk(Database& db, const std::string& vm_uuid,
                        const Disk& disk) {
  absl::StatusOr<Statement> stmt = db.Prepare(absl::StrCat(
      "INSERT INTO vm_disks (position, ", kDiskColumns,
      ") VALUES ((SELECT COALESCE(MAX(position) + 1, 0) FROM vm_disks WHERE "
      "vm_uuid = ?1), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(
          vm_uuid, disk.path(), DiskFormatName(disk.format()),
          int64_t{disk.read_only()}, disk.address().controller(),
          disk.address().target(), disk.address().lun(), disk.serial());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = stmt->Run(); !s.ok()) {
    // The checks before the insert cover duplicates; this is the database's
    // own word on it.
    if (absl::IsFailedPrecondition(s)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "disk ", disk.path(), " at ", ScsiAddressText(disk.address()),
          " collides with an attached disk: ", s.message()));
    }
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Disk>> ReadDisks(Database& db,
                                            const std::string& vm_uuid) {
  absl::StatusOr<Statement> stmt = db.Prepare(
      absl::StrCat("SELECT ", kDiskColumns,
                   " FROM vm_disks WHERE vm_uuid = ? ORDER BY position"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, vm_uuid); !s.ok()) return s;
  std::vector<Disk> disks;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    disks.push_back(DiskFromRow(*stmt));
  }
  return disks;
}

absl::StatusOr<std::map<std::string, std::vector<Disk>>> ReadAllDisks(
    Database& db) {
  absl::StatusOr<Statement> stmt = db.Prepare(absl::StrCat(
      "SELECT ", kDiskColumns, " FROM vm_disks ORDER BY vm_uuid, position"));
  if (!stmt.ok()) return stmt.status();
  std::map<std::string, std::vector<Disk>> disks;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    disks[stmt->ColumnText(0)].push_back(DiskFromRow(*stmt));
  }
  return disks;
}

absl::StatusOr<Disk> DeleteDisk(Database& db, const std::string& vm_uuid,
                                const std::string& path,
                                const hvstack::v1::ScsiAddress& address) {
  absl::StatusOr<std::vector<Disk>> disks = ReadDisks(db, vm_uuid);
  if (!disks.ok()) return disks.status();
  for (const Disk& disk : *disks) {
    const bool match =
        path.empty() ? (disk.address().controller() == address.controller() &&
                        disk.address().target() == address.target() &&
                        disk.address().lun() == address.lun())
                     : disk.path() == path;
    if (!match) continue;
    absl::StatusOr<Statement> stmt = db.Prepare(
        "DELETE FROM vm_disks WHERE vm_uuid = ? AND controller = ? AND "
        "target = ? AND lun = ?");
    if (!stmt.ok()) return stmt.status();
    if (absl::Status s =
            stmt->BindAll(vm_uuid, disk.address().controller(),
                          disk.address().target(), disk.address().lun());
        !s.ok()) {
      return s;
    }
    if (absl::Status s = stmt->Run(); !s.ok()) return s;
    return disk;
  }
  return absl::NotFoundError(absl::StrCat(
      "no disk ",
      path.empty() ? absl::StrCat("at ", ScsiAddressText(address)) : path,
      " is attached"));
}

}  // namespace vmms
