#ifndef HVSTACK_VMMS_NIC_ROWS_H_
#define HVSTACK_VMMS_NIC_ROWS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/sqlite_db.h"

// The `vm_nics` table (schema v10): one row per network adapter, keyed by
// (VM uuid, index), MACs unique per vmms. VmStore calls these inside its own
// transactions, under its lock; nothing here begins or commits one.
namespace vmms {

// Stores `config.nics` (already normalized, indices assigned) for a new VM,
// generating a MAC for each adapter without one (written back into
// `config`). INVALID_ARGUMENT "config.nics[i].mac '...' is already used by VM
// 'x' (adapter k)" for a MAC another VM's adapter has.
absl::Status InsertNicRows(Database& db, const std::string& vm_uuid,
                           hvstack::v1::VmConfig& config);

// Adds one adapter (normalized) at the VM's lowest free index, generating its
// MAC when it has none; returns it as stored. FAILED_PRECONDITION when the
// VM has kMaxNics already; INVALID_ARGUMENT for a MAC in use.
absl::StatusOr<hvstack::v1::NicConfig> InsertNicRow(Database& db,
                                                    const hvstack::v1::Vm& vm,
                                                    hvstack::v1::NicConfig nic);

// Removes the VM's adapter with `mac` (canonical form); returns it.
// NOT_FOUND naming the MAC and VM.
absl::StatusOr<hvstack::v1::NicConfig> DeleteNicRow(Database& db,
                                                    const hvstack::v1::Vm& vm,
                                                    const std::string& mac);

// Fills vm.config.nics from the table, in index order.
absl::Status LoadNicRows(Database& db, hvstack::v1::Vm& vm);
// The same for many VMs with one query.
absl::Status LoadNicRows(Database& db, std::vector<hvstack::v1::Vm>& vms);

}  // namespace vmms

#endif  // HVSTACK_VMMS_NIC_ROWS_H_
