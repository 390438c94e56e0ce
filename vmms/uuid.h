#ifndef HVSTACK_VMMS_UUID_H_
#define HVSTACK_VMMS_UUID_H_

#include <string>

namespace vmms {

// A random RFC 4122 version 4 UUID in its canonical lowercase form, from
// getrandom(2).
std::string NewUuidV4();

}  // namespace vmms

#endif  // HVSTACK_VMMS_UUID_H_
