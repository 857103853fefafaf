// SPDX-License-Identifier: Apache-2.0
#include "launch/needle.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <random>

#include "runtime/check.h"
#include "runtime/file.h"

namespace tidal::launch {
namespace {

// The training script's needle cities (model/training/train_tidal_tiny.py CITIES).
const char* const kCities[] = {
    "Tokyo", "Delhi", "Shanghai", "Cairo", "Mumbai", "Beijing", "Dhaka", "Osaka", "Karachi",
    "Istanbul", "Kinshasa", "Lagos", "Manila", "Tianjin", "Lahore", "Bangalore", "Moscow",
    "Shenzhen", "Jakarta", "Lima", "Bogota", "Paris", "Chennai", "Bangkok", "London", "Nagoya",
    "Hyderabad", "Chicago", "Tehran", "Wuhan", "Luanda", "Baghdad", "Madrid", "Toronto", "Riyadh",
    "Santiago", "Singapore", "Barcelona", "Khartoum", "Houston", "Dallas", "Philadelphia",
    "Atlanta", "Miami", "Boston", "Phoenix", "Seattle", "Denver", "Detroit", "Berlin", "Rome",
    "Athens", "Vienna", "Prague", "Warsaw", "Budapest", "Lisbon", "Dublin", "Oslo", "Stockholm",
    "Helsinki", "Copenhagen", "Amsterdam", "Brussels", "Zurich", "Geneva", "Munich", "Hamburg",
    "Milan", "Naples", "Venice", "Florence", "Marseille", "Lyon", "Seville", "Valencia", "Porto",
    "Edinburgh", "Glasgow", "Manchester", "Liverpool", "Bristol", "Cardiff", "Belfast",
    "Reykjavik", "Kiev", "Minsk", "Riga", "Vilnius", "Tallinn", "Bucharest", "Sofia", "Belgrade",
    "Zagreb", "Sarajevo", "Tirana", "Ankara", "Beirut", "Damascus", "Amman", "Jerusalem", "Dubai",
    "Doha", "Muscat", "Kabul", "Tashkent", "Almaty", "Hanoi", "Seoul", "Busan", "Taipei",
    "Sydney", "Melbourne", "Brisbane", "Perth", "Adelaide", "Auckland", "Wellington", "Nairobi",
    "Addis Ababa", "Accra", "Dakar", "Casablanca", "Algiers", "Tunis", "Tripoli", "Kampala",
    "Harare", "Lusaka", "Johannesburg", "Durban", "Havana", "Kingston", "Panama", "Caracas",
    "Quito", "La Paz", "Montevideo", "Asuncion", "Vancouver", "Montreal", "Ottawa", "Calgary",
    "Winnipeg", "Anchorage", "Honolulu", "Portland", "Sacramento", "San Diego", "Los Angeles",
    "San Francisco", "Las Vegas", "Austin", "Memphis", "Nashville", "New Orleans", "Baltimore",
    "Pittsburgh", "Cleveland", "Cincinnati", "Milwaukee", "Minneapolis", "Omaha", "Buenos Aires",
    "Rio de Janeiro", "Sao Paulo", "Mexico City", "Kuala Lumpur", "Ho Chi Minh City", "Cape Town",
    "Hong Kong", "New York",
};

constexpr const char* kNeedlePrefix = " The special magic ";
constexpr const char* kNeedleSuffix = " number is:";
constexpr int64_t kSnapBack = 200;    // a depth snaps back to a sentence start this close
constexpr int64_t kSnapStart = 300;   // the haystack starts at a sentence start this close

std::string question_text(const std::string& city) {
  return " What is the special magic " + city + " number? The special magic " + city +
         " number is:";
}

bool blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(),
                     [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; });
}

std::string strip(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

}  // namespace

std::string clean_text(const std::string& text) {
  std::string out, para;
  size_t pos = 0;
  auto end_paragraph = [&] {
    if (para.empty()) return;
    out += (out.empty() ? "" : "\n\n") + para;
    para.clear();
  };
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    if (blank(line)) {
      end_paragraph();
    } else {
      para += (para.empty() ? "" : " ") + strip(line);
    }
    pos = nl + 1;
  }
  end_paragraph();
  return out;
}

Status load_haystack(const std::string& path, const model::Tokenizer& tokenizer, Haystack* out) {
  std::string text;
  TIDAL_RETURN_IF_ERROR(read_file(path, &text));
  Haystack h;
  h.path = path;
  TIDAL_RETURN_IF_ERROR(tokenizer.encode(clean_text(text), /*add_bos=*/false, &h.tokens)
                            .with_context(path));
  // Each id's piece, decoded once: does it end a sentence, does it start with whitespace.
  const int32_t vocab = tokenizer.vocab_size();
  std::vector<uint8_t> ends(size_t(vocab), 0), starts_space(size_t(vocab), 0);
  for (int32_t id = 0; id < vocab; ++id) {
    std::string piece;
    if (!tokenizer.decode({id}, /*skip_special=*/true, &piece).ok() || piece.empty()) continue;
    starts_space[size_t(id)] = std::isspace(static_cast<unsigned char>(piece[0])) != 0;
    while (!piece.empty() && (piece.back() == '"' || piece.back() == '\'')) piece.pop_back();
    ends[size_t(id)] = !piece.empty() &&
                       (piece.back() == '.' || piece.back() == '!' || piece.back() == '?');
  }
  h.boundary.assign(h.tokens.size() + 1, 0);
  for (size_t p = 1; p < h.tokens.size(); ++p) {
    const int32_t a = h.tokens[p - 1], b = h.tokens[p];
    h.boundary[p] = a >= 0 && a < vocab && b >= 0 && b < vocab && ends[size_t(a)] &&
                    starts_space[size_t(b)];
  }
  *out = std::move(h);
  return ok_status();
}

std::vector<int32_t> NeedleCase::prompt() const {
  std::vector<int32_t> p = context;
  p.insert(p.end(), question.begin(), question.end());
  return p;
}

Status NeedleMaker::create(const model::Tokenizer& tokenizer, int32_t bos, Haystack haystack,
                           std::unique_ptr<NeedleMaker>* out) {
  std::unique_ptr<NeedleMaker> m(new NeedleMaker());
  m->bos_ = bos;
  m->tokenizer_ = &tokenizer;
  m->haystack_ = std::move(haystack);
  TIDAL_RETURN_IF_ERROR(tokenizer.encode(".", false, &m->dot_ids_));
  for (const char* city : kCities) {
    m->cities_.push_back(city);
    std::vector<int32_t> needle, question;
    TIDAL_RETURN_IF_ERROR(
        tokenizer.encode(std::string(kNeedlePrefix) + city + kNeedleSuffix, false, &needle));
    TIDAL_RETURN_IF_ERROR(tokenizer.encode(question_text(city), false, &question));
    m->needle_ids_.push_back(std::move(needle));
    m->question_ids_.push_back(std::move(question));
  }
  // The pieces compose as the whole sentence tokenizes (as the training script asserts).
  std::vector<int32_t> whole, parts = m->needle_ids_[0];
  TIDAL_RETURN_IF_ERROR(tokenizer.encode(
      std::string(kNeedlePrefix) + m->cities_[0] + kNeedleSuffix + " 1234567.", false, &whole));
  const std::vector<int32_t> number = m->number_ids("1234567");
  parts.insert(parts.end(), number.begin(), number.end());
  parts.insert(parts.end(), m->dot_ids_.begin(), m->dot_ids_.end());
  if (whole != parts) {
    return invalid_argument("the tokenizer does not split the needle sentence at its parts "
                            "(\"... number is:\", \" 1234567\", \".\")");
  }
  *out = std::move(m);
  return ok_status();
}

std::vector<int32_t> NeedleMaker::number_ids(const std::string& digits) const {
  std::vector<int32_t> ids;
  TIDAL_CHECK(tokenizer_->encode(" " + digits, false, &ids).ok(), "needle: cannot encode digits");
  return ids;
}

Status NeedleMaker::make_grid(const std::vector<int64_t>& lengths,
                             const std::vector<int64_t>& depths, int64_t needles, uint64_t seed,
                             int64_t gen_tokens, std::vector<NeedleCase>* out) const {
  for (int64_t length : lengths) {
    for (int64_t depth : depths) {
      for (int64_t i = 0; i < needles; ++i) {
        NeedleCase c;
        TIDAL_RETURN_IF_ERROR(make({length, depth, i, seed, gen_tokens}, &c));
        out->push_back(std::move(c));
      }
    }
  }
  return ok_status();
}

Status NeedleMaker::make(const NeedleSpec& spec, NeedleCase* out) const {
  if (spec.depth_percent < 0 || spec.depth_percent > 100) {
    return invalid_argument("needle depth must be in 0..100 (got " +
                            std::to_string(spec.depth_percent) + ")");
  }
  std::seed_seq seq{uint32_t(spec.seed), uint32_t(spec.seed >> 32), uint32_t(spec.length),
                    uint32_t(spec.depth_percent), uint32_t(spec.index), 77u};
  std::mt19937_64 rng(seq);
  NeedleCase c;
  c.spec = spec;
  const size_t city = size_t(rng() % cities_.size());
  c.city = cities_[city];
  c.number = std::to_string(1000000 + rng() % 9000000);
  const std::vector<int32_t>& needle = needle_ids_[city];
  const std::vector<int32_t> number = number_ids(c.number);
  c.question = question_ids_[city];
  const int64_t fixed =
      1 + int64_t(needle.size() + number.size() + dot_ids_.size() + c.question.size());
  // Room for one haystack token at least, compared before subtracting: length - gen_tokens
  // overflows for a huge gen_tokens.
  const bool room = spec.gen_tokens <= spec.length - 4 - fixed - 1;
  const int64_t prompt_len = room ? spec.length - spec.gen_tokens - 4 : 0;
  const int64_t hay_len = prompt_len - fixed;
  const int64_t avail = int64_t(haystack_.tokens.size());
  if (!room) {
    return out_of_range("a " + std::to_string(spec.length) + "-token case leaves no room for " +
                        "a haystack around the needle and question");
  }
  if (avail < hay_len + 2) {
    return out_of_range(haystack_.path + " has " + std::to_string(avail) + " tokens; a " +
                        std::to_string(spec.length) + "-token case needs " +
                        std::to_string(hay_len + 2));
  }
  int64_t off = int64_t(rng() % uint64_t(avail - hay_len - 1));
  for (int64_t p = off; p < std::min(off + kSnapStart, avail - hay_len); ++p) {
    if (haystack_.boundary[size_t(p)]) {
      off = p;
      break;
    }
  }
  c.haystack_offset = off;
  // Where the needle goes: at the depth, snapped back to a sentence start when one is close.
  const auto target = int64_t(std::llround(double(spec.depth_percent) / 100.0 * double(hay_len)));
  int64_t at = target;
  if (spec.depth_percent == 0) {
    at = 0;
  } else if (spec.depth_percent == 100) {
    at = hay_len;
  } else {
    for (int64_t p = target; p >= std::max<int64_t>(0, target - kSnapBack + 1); --p) {
      if (haystack_.boundary[size_t(off + p)]) {
        at = p;
        break;
      }
    }
  }
  const auto hay = haystack_.tokens.begin() + off;
  c.context.push_back(bos_);
  c.context.insert(c.context.end(), hay, hay + at);
  c.needle_begin = int64_t(c.context.size());
  c.context.insert(c.context.end(), needle.begin(), needle.end());
  c.number_begin = int64_t(c.context.size());
  c.context.insert(c.context.end(), number.begin(), number.end());
  c.number_end = int64_t(c.context.size());
  c.context.insert(c.context.end(), dot_ids_.begin(), dot_ids_.end());
  c.needle_end = int64_t(c.context.size());
  c.context.insert(c.context.end(), hay + at, hay + hay_len);
  TIDAL_CHECK(int64_t(c.context.size() + c.question.size()) == prompt_len,
              "needle: prompt length off");
  *out = std::move(c);
  return ok_status();
}

}  // namespace tidal::launch
