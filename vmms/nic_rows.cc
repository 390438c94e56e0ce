#include "vmms/nic_rows.h"

#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "vmms/nic_config.h"
#include "vmms/validation.h"

namespace vmms {
namespace {

// The VM name and index of the adapter that has `mac`, if any.
absl::StatusOr<std::optional<std::pair<std::string, uint32_t>>> MacOwner(
    Database& db, const std::string& mac) {
  absl::StatusOr<Statement> stmt = db.Prepare(
      "SELECT vms.name, vm_nics.idx FROM vm_nics JOIN vms ON vms.uuid = "
      "vm_nics.vm_uuid WHERE vm_nics.mac = ?");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, mac); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::nullopt;
  return std::make_pair(stmt->ColumnText(0),
                        static_cast<uint32_t>(stmt->ColumnInt64(1)));
}

// A given MAC that nobody has, or a fresh generated one. 2^24 generated
// addresses per prefix: a collision is retried, a full space is an error.
absl::Status ResolveMac(Database& db, hvstack::v1::NicConfig& nic,
                        const std::string& field) {
  if (!nic.mac().empty()) {
    absl::StatusOr<std::optional<std::pair<std::string, uint32_t>>> owner =
        MacOwner(db, nic.mac());
    if (!owner.ok()) return owner.status();
    if (owner->has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".mac ", Quoted(nic.mac()), " is already used by VM '",
          (*owner)->first, "' (adapter ", (*owner)->second,
          "): MACs are unique among a vmms's adapters; give another or none "
          "(vmms then generates one)"));
    }
    return absl::OkStatus();
  }
  for (int attempt = 0; attempt < 64; ++attempt) {
    const std::string mac = FormatMac(GenerateMac());
    absl::StatusOr<std::optional<std::pair<std::string, uint32_t>>> owner =
        MacOwner(db, mac);
    if (!owner.ok()) return owner.status();
    if (!owner->has_value()) {
      nic.set_mac(mac);
      return absl::OkStatus();
    }
  }
  return absl::ResourceExhaustedError(
      absl::StrCat(field,
                   ": no free generated MAC found after 64 tries; "
                   "give one explicitly"));
}

absl::Status InsertRow(Database& db, const std::string& vm_uuid,
                       const hvstack::v1::NicConfig& nic) {
  absl::StatusOr<Statement> stmt = db.Prepare(
      "INSERT INTO vm_nics (vm_uuid, idx, mac, bridge, mtu) VALUES (?, ?, ?, "
      "?, "
      "?)");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(vm_uuid, nic.index(), nic.mac(),
                                     nic.bridge(), nic.mtu());
      !s.ok()) {
    return s;
  }
  return stmt->Run();
}

hvstack::v1::NicConfig NicFromRow(const Statement& row, int first_column) {
  hvstack::v1::NicConfig nic;
  nic.set_index(static_cast<uint32_t>(row.ColumnInt64(first_column)));
  nic.set_mac(row.ColumnText(first_column + 1));
  nic.set_bridge(row.ColumnText(first_column + 2));
  nic.set_mtu(static_cast<uint32_t>(row.ColumnInt64(first_column + 3)));
  return nic;
}

}  // namespace

absl::Status InsertNicRows(Database& db, const std::string& vm_uuid,
                           hvstack::v1::VmConfig& config) {
  for (int i = 0; i < config.nics_size(); ++i) {
    hvstack::v1::NicConfig& nic = *config.mutable_nics(i);
    if (absl::Status s =
            ResolveMac(db, nic, absl::StrCat("config.nics[", i, "]"));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = InsertRow(db, vm_uuid, nic); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<hvstack::v1::NicConfig> InsertNicRow(
    Database& db, const hvstack::v1::Vm& vm, hvstack::v1::NicConfig nic) {
  absl::StatusOr<Statement> used =
      db.Prepare("SELECT idx FROM vm_nics WHERE vm_uuid = ? ORDER BY idx");
  if (!used.ok()) return used.status();
  if (absl::Status s = used->Bind(1, vm.uuid()); !s.ok()) return s;
  uint32_t index = 0;
  while (true) {
    absl::StatusOr<bool> row = used->Step();
    if (!row.ok()) return row.status();
    if (!*row || static_cast<uint32_t>(used->ColumnInt64(0)) != index) break;
    ++index;
  }
  if (index >= kMaxNics) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM '", vm.name(), "' has ", kMaxNics,
                     " network adapters already, the most a VM can have; "
                     "remove one first"));
  }
  nic.set_index(index);
  if (absl::Status s = ResolveMac(db, nic, "nic"); !s.ok()) return s;
  if (absl::Status s = InsertRow(db, vm.uuid(), nic); !s.ok()) return s;
  return nic;
}

absl::StatusOr<hvstack::v1::NicConfig> DeleteNicRow(Database& db,
                                                    const hvstack::v1::Vm& vm,
                                                    const std::string& mac) {
  absl::StatusOr<Statement> find = db.Prepare(
      "SELECT idx, mac, bridge, mtu FROM vm_nics WHERE vm_uuid = ? AND mac = "
      "?");
  if (!find.ok()) return find.status();
  if (absl::Status s = find->BindAll(vm.uuid(), mac); !s.ok()) return s;
  absl::StatusOr<bool> row = find->Step();
  if (!row.ok()) return row.status();
  if (!*row) {
    return absl::NotFoundError(absl::StrCat(
        "VM '", vm.name(), "' has no network adapter with MAC ", Quoted(mac)));
  }
  hvstack::v1::NicConfig nic = NicFromRow(*find, 0);
  absl::StatusOr<Statement> remove =
      db.Prepare("DELETE FROM vm_nics WHERE vm_uuid = ? AND mac = ?");
  if (!remove.ok()) return remove.status();
  if (absl::Status s = remove->BindAll(vm.uuid(), mac); !s.ok()) return s;
  if (absl::Status s = remove->Run(); !s.ok()) return s;
  return nic;
}

absl::Status LoadNicRows(Database& db, hvstack::v1::Vm& vm) {
  absl::StatusOr<Statement> stmt = db.Prepare(
      "SELECT idx, mac, bridge, mtu FROM vm_nics WHERE vm_uuid = ? ORDER BY "
      "idx");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, vm.uuid()); !s.ok()) return s;
  vm.mutable_config()->clear_nics();
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
    *vm.mutable_config()->add_nics() = NicFromRow(*stmt, 0);
  }
}

absl::Status LoadNicRows(Database& db, std::vector<hvstack::v1::Vm>& vms) {
  std::map<std::string, hvstack::v1::Vm*> by_uuid;
  for (hvstack::v1::Vm& vm : vms) {
    vm.mutable_config()->clear_nics();
    by_uuid[vm.uuid()] = &vm;
  }
  absl::StatusOr<Statement> stmt = db.Prepare(
      "SELECT vm_uuid, idx, mac, bridge, mtu FROM vm_nics ORDER BY vm_uuid, "
      "idx");
  if (!stmt.ok()) return stmt.status();
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
    auto it = by_uuid.find(stmt->ColumnText(0));
    if (it == by_uuid.end()) continue;
    *it->second->mutable_config()->add_nics() = NicFromRow(*stmt, 1);
  }
}

}  // namespace vmms
