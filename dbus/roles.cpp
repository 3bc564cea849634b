#include "dbus/roles.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <vector>

namespace thecal::dbus {

bool uid_in_group(std::uint32_t uid, const char* group) {
  std::vector<char> buf(16384);
  struct group grp{};
  struct group* gr = nullptr;
  if (getgrnam_r(group, &grp, buf.data(), buf.size(), &gr) != 0 || gr == nullptr) return false;
  const gid_t want = gr->gr_gid;

  std::vector<char> pbuf(16384);
  passwd pw{};
  passwd* p = nullptr;
  if (getpwuid_r(uid, &pw, pbuf.data(), pbuf.size(), &p) != 0 || p == nullptr) return false;
  if (p->pw_gid == want) return true;
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (getgrouplist(p->pw_name, p->pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (getgrouplist(p->pw_name, p->pw_gid, groups.data(), &n) < 0) return false;
  }
  for (int i = 0; i < n; ++i) {
    if (groups[static_cast<std::size_t>(i)] == want) return true;
  }
  return false;
}

int caller_info(sd_bus_message* m, CallerInfo& out) {
  sd_bus_creds* creds = nullptr;
  int r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds);
  if (r < 0) return r;
  uid_t uid = 0;
  r = sd_bus_creds_get_euid(creds, &uid);
  sd_bus_creds_unref(creds);
  if (r < 0) return r;
  out.uid = uid;
  out.clinician = uid == 0 || uid_in_group(uid, kClinicianGroup);
  out.patient = out.clinician || uid_in_group(uid, kPatientGroup);
  return 0;
}

}  // namespace thecal::dbus
