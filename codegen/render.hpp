// Named-placeholder substitution for the instantiation templates: {{KEY}}.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "support/status.hpp"

namespace ffnjit {

using TemplateValues = std::map<std::string, std::string>;

// Replaces every {{KEY}} (KEY: A-Z, 0-9, _) in `text`. Fails on a placeholder
// with no value, on a value no placeholder uses, and on a malformed placeholder:
// a template and its generator cannot drift apart silently.
Expected<std::string> render_template(std::string_view text, const TemplateValues& values,
                                      std::string_view template_name);

}  // namespace ffnjit
