// Named-placeholder substitution for the instantiation templates: {{KEY}}.
#include "codegen/render.hpp"

#include <set>

namespace ffnjit {

Expected<std::string> render_template(std::string_view text, const TemplateValues& values,
                                      std::string_view template_name) {
  std::string out;
  std::set<std::string> used;
  const std::string where = " in template " + std::string(template_name);
  size_t pos = 0;
  while (true) {
    size_t open = text.find("{{", pos);
    if (open == std::string_view::npos) {
      out.append(text.substr(pos));
      break;
    }
    out.append(text.substr(pos, open - pos));
    size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos)
      return internal_error("unterminated placeholder at offset " + std::to_string(open) + where);
    std::string key(text.substr(open + 2, close - open - 2));
    bool well_formed = !key.empty();
    for (char c : key) well_formed &= (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!well_formed) return internal_error("malformed placeholder {{" + key + "}}" + where);
    auto it = values.find(key);
    if (it == values.end()) return internal_error("placeholder {{" + key + "}} has no value" + where);
    out.append(it->second);
    used.insert(key);
    pos = close + 2;
  }
  for (const auto& [key, value] : values)
    if (!used.count(key)) return internal_error("value for " + key + " is not used by any placeholder" + where);
  return out;
}

}  // namespace ffnjit
