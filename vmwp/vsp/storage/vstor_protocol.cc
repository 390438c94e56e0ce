#include "vmwp/vsp/storage/vstor_protocol.h"

namespace vsp::storage {

const char* VstorOperationName(uint32_t op) {
  switch (op) {
    case kOpCompleteIo:
      return "COMPLETE_IO";
    case kOpRemoveDevice:
      return "REMOVE_DEVICE";
    case kOpExecuteSrb:
      return "EXECUTE_SRB";
    case kOpResetLun:
      return "RESET_LUN";
    case kOpResetAdapter:
      return "RESET_ADAPTER";
    case kOpResetBus:
      return "RESET_BUS";
    case kOpBeginInitialization:
      return "BEGIN_INITIALIZATION";
    case kOpEndInitialization:
      return "END_INITIALIZATION";
    case kOpQueryProtocolVersion:
      return "QUERY_PROTOCOL_VERSION";
    case kOpQueryProperties:
      return "QUERY_PROPERTIES";
    case kOpEnumerateBus:
      return "ENUMERATE_BUS";
    case kOpFcHbaData:
      return "FCHBA_DATA";
    case kOpCreateSubChannels:
      return "CREATE_SUB_CHANNELS";
  }
  return "unknown operation";
}

}  // namespace vsp::storage
