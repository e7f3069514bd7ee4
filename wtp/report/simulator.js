/* wtp price-book simulator: the take-up arithmetic of wtp.pricing.simulator_inputs, in the page.
 *
 * Reads the JSON record in <script id="wtp-data">, lets the reader edit each book's prices and
 * move features between tiers, and recomputes take-up, customers and revenue with 90% intervals
 * on the same respondents, draws and calibration as `wtp simulate`. No network, no libraries.
 * Everything from the data reaches the page through textContent, never as markup.
 */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("wtp-data").textContent);
  var F = DATA.features.length;
  var D = DATA.draws;
  var W = DATA.tiers.length + 1; // RFC error columns: tiers by position, not buying last
  var SVGNS = "http://www.w3.org/2000/svg";

  function decode(text) {
    if (text === null || text === undefined) return null;
    var bin = atob(text);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return DATA.dtype === "f8" ? new Float64Array(bytes.buffer) : new Float32Array(bytes.buffer);
  }

  // noise between tiers (wtp.pricing.valuation.tier_noise), redrawn from its seed: the counter
  // hash over every draw of the run (the first D kept), times each respondent's price scale,
  // the entry package sharing not buying's error
  function tierNoise(s, scale) {
    var Wn = s.shock_width, K = Wn - 1, Dt = DATA.draws_total;
    var keyv = hashKey(s.noise_seed, 0);
    var out = new Float64Array(s.n * D * Wn);
    for (var i = 0; i < s.n; i++) {
      for (var d = 0; d < D; d++) {
        var o = (i * D + d) * Wn;
        for (var k = 0; k < K; k++) out[o + k] = scale[i] * hashGumbel(keyv, (i * Dt + d) * Wn + k);
        out[o + K] = out[o];
      }
    }
    return out;
  }

  var SEGS = DATA.segments.map(function (s, index) {
    var scale = decode(s.scale);
    return {
      index: index, name: s.name, n: s.n, prospects: s.prospects === null ? NaN : s.prospects, seats: s.seats === null ? 1 : s.seats,
      own: s.own_book, described: s.described, valued: s.valued, factor: s.factor, tested: s.tested, source: s.source,
      base: decode(s.base), boot: decode(s.boot), fv: decode(s.feature_values), reference: decode(s.reference),
      tooCheap: decode(s.too_cheap), shock: s.noise_seed === null || s.noise_seed === undefined ? decode(s.shock) : tierNoise(s, scale),
      shockWidth: s.shock_width || 0, scale: scale, rfc: null
    };
  });

  // ------------------------------------------------------------------------------------------
  // Books: tiers, the lowest tier of each feature (-1: not in the book), prices

  function key(scenario, name) { return scenario + ":" + name; }

  function fromSpec(b) {
    var lowest = [];
    for (var f = 0; f < F; f++) {
      var lo = -1;
      for (var k = 0; k < b.tiers.length; k++) if (b.membership[k][f]) { lo = k; break; }
      lowest.push(lo);
    }
    return { scenario: b.scenario, name: b.name, tiers: b.tiers.slice(), lowest: lowest, prices: b.prices.map(function (p) { return p === null ? NaN : p; }), addOns: addOnsFromSpec(b) };
  }

  function copyBook(b) { return { scenario: b.scenario, name: b.name, tiers: b.tiers.slice(), lowest: b.lowest.slice(), prices: b.prices.slice(), addOns: b.addOns.map(function (a) { return { f: a.f, price: a.price }; }) }; }

  // add-ons of a book: [{f: feature index, price}] (NaN: not offered)
  function addOnsFromSpec(b) {
    return (b.add_ons || []).map(function (a) { return { f: DATA.features.indexOf(a[0]), price: a[1] === null ? NaN : a[1] }; }).filter(function (a) { return a.f >= 0; });
  }

  var PROPOSAL = {};
  DATA.books.forEach(function (b) { PROPOSAL[key(b.scenario, b.name)] = fromSpec(b); });
  var BOOKS = {};
  function resetAll() { Object.keys(PROPOSAL).forEach(function (k) { BOOKS[k] = copyBook(PROPOSAL[k]); }); }
  resetAll();

  function member(book, k, f) { return book.lowest[f] >= 0 && book.lowest[f] <= k; }

  function offered(books, seg, scenario) {
    if (scenario === "multiple" && seg.own && books[key("multiple", seg.name)]) return books[key("multiple", seg.name)];
    return books[key("single", "all")] || null;
  }

  // ------------------------------------------------------------------------------------------
  // The take-up rules (wtp.pricing.simulator_inputs)

  function mix32(x) {
    x = x >>> 0;
    x ^= x >>> 16; x = Math.imul(x, 0x7feb352d) >>> 0;
    x ^= x >>> 15; x = Math.imul(x, 0x846ca68b) >>> 0;
    x ^= x >>> 16;
    return x >>> 0;
  }

  // wtp.pricing.noise.rfc_gumbel, one error at a time: the key of (seed, segment) and the
  // standard Gumbel error at counter c
  function hashKey(seed, index) { return mix32((Math.imul(seed, 0x9e3779b9) + Math.imul(index, 0x85ebca6b)) >>> 0); }
  function hashGumbel(keyv, c) { return -Math.log(-Math.log((mix32((c ^ keyv) >>> 0) + 0.5) / 4294967296)); }

  function rfcErrors(seg, seed) {
    if (seg.rfc && seg.rfc.seed === seed) return seg.rfc.g;
    var keyv = hashKey(seed, seg.index);
    var total = seg.n * D * W;
    var g = new Float64Array(total);
    for (var c = 0; c < total; c++) g[c] = hashGumbel(keyv, c);
    seg.rfc = { seed: seed, g: g };
    return g;
  }

  // D × K calibrated shares (every tier of the book) and D revenues, over the first `draws` draws
  function evaluate(seg, book, rule, seed, draws) {
    var Kall = book.tiers.length;
    draws = draws || D;
    var shares = new Float64Array(draws * Kall);
    var revenue = new Float64Array(draws);
    var idx = [];
    for (var k = 0; k < Kall; k++) if (isFinite(book.prices[k])) idx.push(k);
    var K = idx.length, N = seg.n;
    var taken = new Float64Array(N * draws * K), wscale = new Float64Array(draws); // for add-ons
    if (K === 0) return { shares: shares, revenue: revenue, K: Kall, draws: draws, idx: idx, taken: taken, wscale: wscale };
    var prices = idx.map(function (k) { return book.prices[k]; });
    // extra value of each package beyond the described product: N × K
    var coef = [];
    for (var j = 0; j < K; j++) {
      var row = new Float64Array(F);
      for (var f = 0; f < F; f++) row[f] = (member(book, idx[j], f) ? 1 : 0) - (seg.described[f] ? 1 : 0);
      coef.push(row);
    }
    var extra = new Float64Array(N * K);
    for (var i = 0; i < N; i++) for (j = 0; j < K; j++) {
      var s = 0;
      for (f = 0; f < F; f++) s += seg.fv[i * F + f] * coef[j][f];
      extra[i * K + j] = s;
    }
    // too cheap: the quality threshold of respondent i in draw d (tooCheap, N × D) scaled by
    // the package's value; ratio[i, j] is that scale
    var ratio = null;
    if (DATA.too_cheap === "exclude" && seg.tooCheap) {
      ratio = new Float64Array(N * K);
      for (i = 0; i < N; i++) for (j = 0; j < K; j++) {
        var ref = seg.reference[i];
        ratio[i * K + j] = Math.max(ref > 0 ? (ref + extra[i * K + j]) / ref : 1, 0);
      }
    }
    var useShock = seg.shock && (rule === "first-choice" || rule === "rfc");
    var g = null;
    if (rule === "rfc" && !seg.shock) g = rfcErrors(seg, seed);
    var sh = new Float64Array(K);
    for (var d = 0; d < draws; d++) {
      sh.fill(0);
      var wsum = 0;
      for (i = 0; i < N; i++) {
        var w = seg.boot[d * N + i];
        wsum += w;
        var b = seg.base[i * D + d];
        if (b === -Infinity) continue;
        if (rule === "share-of-preference") {
          var sc = seg.scale[i], m = 0, ex = new Array(K), tot = 0;
          for (j = 0; j < K; j++) {
            var v = ratio && prices[j] < seg.tooCheap[i * D + d] * ratio[i * K + j] ? -Infinity : ((b + extra[i * K + j]) - prices[j]) / sc;
            ex[j] = v; if (v > m) m = v;
          }
          for (j = 0; j < K; j++) { ex[j] = Math.exp(ex[j] - m); tot += ex[j]; }
          var den = Math.exp(-m) + tot;
          for (j = 0; j < K; j++) { sh[j] += w * (ex[j] / den); taken[(i * draws + d) * K + j] = ex[j] / den; }
          continue;
        }
        var best = -1, top = -Infinity;
        for (j = 0; j < K; j++) {
          if (ratio && prices[j] < seg.tooCheap[i * D + d] * ratio[i * K + j]) continue;
          var x = (b + extra[i * K + j]) - prices[j];
          if (useShock) {
            var o = (i * D + d) * seg.shockWidth;
            x = x + (seg.shock[o + j] - seg.shock[o + seg.shockWidth - 1]);
          } else if (g) {
            var q = (i * D + d) * W;
            x = x + (g[q + j] - g[q + W - 1]) * seg.scale[i];
          }
          if (x > top) { top = x; best = j; }
        }
        if (best >= 0 && top >= 0) { sh[best] += w; taken[(i * draws + d) * K + best] = 1; }
      }
      var sum = 0;
      for (j = 0; j < K; j++) { sh[j] = (sh[j] / wsum) * seg.factor[d]; sum += sh[j]; }
      var rev = 0;
      for (j = 0; j < K; j++) {
        if (sum > 1) sh[j] = sh[j] / sum; // calibration cannot make more than everyone buy
        shares[d * Kall + idx[j]] = sh[j];
        rev += sh[j] * prices[j];
      }
      revenue[d] = seg.prospects * seg.seats * rev;
      wscale[d] = (sum > 1 ? seg.factor[d] / sum : seg.factor[d]) / wsum;
    }
    return { shares: shares, revenue: revenue, K: Kall, draws: draws, idx: idx, taken: taken, wscale: wscale };
  }

  function mean(a) { var s = 0; for (var i = 0; i < a.length; i++) s += a[i]; return s / a.length; }

  function quantile(a, q) { // numpy's default (linear) quantile
    var x = Array.prototype.slice.call(a).sort(function (u, v) { return u - v; });
    var h = (x.length - 1) * q, lo = Math.floor(h);
    return lo + 1 < x.length ? x[lo] + (h - lo) * (x[lo + 1] - x[lo]) : x[lo];
  }

  function interval(a) { var t = (1 - DATA.level) / 2; return [quantile(a, t), quantile(a, 1 - t)]; }

  function column(out, k) { var c = new Float64Array(out.draws); for (var d = 0; d < out.draws; d++) c[d] = out.shares[d * out.K + k]; return c; }

  // every scenario × segment: per-tier take-up, customers, revenue, intervals; totals
  function simulate(books, rule, seed) {
    var res = { single: { segments: [], total: null }, multiple: { segments: [], total: null } };
    ["single", "multiple"].forEach(function (scenario) {
      var tot = null, V = 0, C = 0;
      SEGS.forEach(function (seg) {
        var book = offered(books, seg, scenario);
        if (!book || !isFinite(seg.prospects)) return;
        var out = evaluate(seg, book, rule, seed);
        var tiers = book.tiers.map(function (t, k) {
          var sh = column(out, k), p = book.prices[k];
          var rev = sh.map(function (x) { return seg.prospects * seg.seats * x * (isFinite(p) ? p : 0); });
          return { tier: t, price: p, share: mean(sh), shareInt: interval(sh), customers: seg.prospects * mean(sh), revenue: mean(rev), revenueInt: interval(rev) };
        });
        var conv = new Float64Array(out.draws);
        for (var d = 0; d < out.draws; d++) for (var k = 0; k < out.K; k++) conv[d] += out.shares[d * out.K + k];
        var row = { segment: seg.name, book: book.name, tiers: tiers, conversion: mean(conv), customers: seg.prospects * mean(conv), revenue: mean(out.revenue), revenueInt: interval(out.revenue), prospects: seg.prospects };
        addOnResults(seg, book, out, row);
        res[scenario].segments.push(row);
        V += seg.prospects; C += row.customers;
        if (tot === null) tot = Float64Array.from(out.revenue); else for (d = 0; d < tot.length; d++) tot[d] += out.revenue[d];
      });
      if (tot) res[scenario].total = { segment: "total", customers: C, conversion: V ? C / V : NaN, revenue: mean(tot), revenueInt: interval(tot) };
    });
    return res;
  }

  // ------------------------------------------------------------------------------------------
  // Add-ons (wtp.pricing.add_ons): a respondent who takes a package lacking feature f buys f on
  // top when m + σ·ε ≥ price, ε logistic, σ the conjoint price scale (add_on_noise = "conjoint");
  // without σ when m ≥ price. Weighted and calibrated per draw as the package shares.

  function offeredAddOns(book) { return book.addOns.filter(function (a) { return book.lowest[a.f] < 0; }); }

  function buyProbability(seg, i, f, price) {
    var m = seg.fv[i * F + f];
    var s = DATA.add_on_noise === "conjoint" && seg.scale ? seg.scale[i] : NaN;
    if (isFinite(s) && s > 0) return 0.5 * (1 + Math.tanh((m - price) / s / 2));
    return m >= price ? 1 : 0;
  }

  function addOnShares(seg, book, out, f, price) { // D: share of the segment's prospects
    var K = out.idx.length, N = seg.n, share = new Float64Array(out.draws);
    if (!isFinite(price) || !seg.valued[f]) return share;
    var lacks = out.idx.map(function (k) { return member(book, k, f) ? 0 : 1; });
    var buy = new Float64Array(N);
    for (var i = 0; i < N; i++) buy[i] = buyProbability(seg, i, f, price);
    for (var d = 0; d < out.draws; d++) {
      var s = 0;
      for (i = 0; i < N; i++) {
        var a = 0, o = (i * out.draws + d) * K;
        for (var j = 0; j < K; j++) a += out.taken[o + j] * lacks[j];
        if (a > 0) s += seg.boot[d * N + i] * a * buy[i];
      }
      share[d] = s * out.wscale[d];
    }
    return share;
  }

  function addOnResults(seg, book, out, row) {
    var total = new Float64Array(out.draws);
    row.addOns = offeredAddOns(book).map(function (a) {
      var sh = addOnShares(seg, book, out, a.f, a.price);
      var rev = sh.map(function (x) { return seg.prospects * seg.seats * x * (isFinite(a.price) ? a.price : 0); });
      for (var d = 0; d < out.draws; d++) total[d] += rev[d];
      return { feature: DATA.features[a.f], price: a.price, share: mean(sh), customers: seg.prospects * mean(sh), revenue: mean(rev), revenueInt: interval(rev) };
    });
    row.addOnRevenue = mean(total);
    row.addOnRevenueInt = interval(total);
  }

  // ------------------------------------------------------------------------------------------
  // Guardrails (as wtp.pricing.simulator_inputs.guardrails)

  function testedRange(seg, book, k) {
    if (!seg.tested) return null;
    var lo = seg.tested.low, hi = seg.tested.high;
    if (seg.tested.source.indexOf("Van Westendorp") === 0) {
      if (!seg.wbar) { // each respondent's mean weight over the draws, computed once
        seg.wbar = new Float64Array(seg.n);
        for (var dd = 0; dd < D; dd++) for (var ii = 0; ii < seg.n; ii++) seg.wbar[ii] += seg.boot[dd * seg.n + ii];
        for (ii = 0; ii < seg.n; ii++) seg.wbar[ii] /= D;
      }
      var wsum = 0, add = 0;
      for (var i = 0; i < seg.n; i++) {
        var w = seg.wbar[i];
        var e = 0;
        for (var f = 0; f < F; f++) e += seg.fv[i * F + f] * ((member(book, k, f) ? 1 : 0) - (seg.described[f] ? 1 : 0));
        add += w * e; wsum += w;
      }
      hi += Math.max(add / wsum, 0);
    }
    return [lo, hi];
  }

  function pct(x) { return x < 0.01 ? (100 * x).toFixed(1) + "%" : Math.round(100 * x) + "%"; }

  function marks(book) {
    var segs = SEGS.filter(function (s) { return book.name === "all" || s.name === book.name; });
    var out = [];
    book.tiers.forEach(function (t, k) {
      var p = book.prices[k];
      if (!isFinite(p)) return;
      var lo = Infinity, hi = -Infinity, what = null;
      segs.forEach(function (s) { var r = testedRange(s, book, k); if (r) { lo = Math.min(lo, r[0]); hi = Math.max(hi, r[1]); what = what || s.tested.source; } });
      if (what === null || (p >= lo && p <= hi)) return;
      var far = p > hi ? p / hi - 1 : 1 - p / lo;
      out.push({ tier: k, feature: null, outside: far, text: t + " at " + money(p, 2) + " is " + pct(far) + (p > hi ? " above the highest" : " below the lowest") + " price tested (" + money(p > hi ? hi : lo, 2) + ", " + what + "): extrapolated" });
    });
    for (var f = 0; f < F; f++) {
      var k = book.lowest[f];
      if (k < 0 || !isFinite(book.prices[k])) continue;
      var missing = segs.filter(function (s) { return !s.valued[f]; }).map(function (s) { return s.name; });
      if (missing.length) out.push({ tier: k, feature: DATA.features[f], outside: NaN, text: label(f) + " in " + book.tiers[k] + " has no money value for " + missing.join(", ") + " (no conjoint level, no bridge): counted as 0" });
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // Formatting and DOM helpers

  function group(s) { return s.replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function money(x, digits) {
    if (!isFinite(x)) return "–";
    var s = Math.abs(x).toFixed(digits === undefined ? 0 : digits), parts = s.split(".");
    return (x < 0 ? "−" : "") + group(parts[0]) + (parts.length > 1 ? "." + parts[1] : "");
  }
  function share(x) { return isFinite(x) ? (100 * x).toFixed(1) + "%" : "–"; }
  function label(f) { return DATA.labels[DATA.features[f]] || DATA.features[f]; }
  var PRICE_DIGITS = DATA.books.every(function (b) { return b.prices.every(function (p) { return p === null || p === Math.round(p); }); }) ? 0 : 2;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (a) { e.setAttribute(a, attrs[a]); });
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function cell(tr, text, attrs) { var td = el("td", attrs, text); tr.appendChild(td); return td; }

  // ------------------------------------------------------------------------------------------
  // The page

  var ui = {
    book: document.getElementById("book"), rule: document.getElementById("rule"), editor: document.getElementById("editor"),
    features: document.getElementById("features"), takeup: document.getElementById("takeup"), totals: document.getElementById("totals"),
    marks: document.getElementById("marks"), sweeps: document.getElementById("sweeps"), timing: document.getElementById("timing"),
    exportText: document.getElementById("export-text"), draws: document.getElementById("draws-note")
  };
  var bookKeys = Object.keys(BOOKS).filter(function (k) {
    var b = BOOKS[k];
    return b.scenario === "single" || SEGS.some(function (s) { return s.own && s.name === b.name; });
  });
  bookKeys.forEach(function (k) {
    var b = BOOKS[k];
    ui.book.appendChild(el("option", { value: k }, b.scenario === "single" ? "One book for all segments (single)" : b.name + " – its own book (multiple)"));
  });
  var canLogit = SEGS.every(function (s) { return s.scale; }); // as the CLI: every segment needs a conjoint price scale
  [["first-choice", "First choice (the contract's take-up rule)"], ["share-of-preference", "Share of preference (logit, conjoint price scale)"], ["rfc", "Randomised first choice (RFC)"]].forEach(function (r) {
    var o = el("option", { value: r[0] }, r[1]);
    if (r[0] !== "first-choice" && !canLogit) { o.disabled = true; o.textContent += " – needs a conjoint"; }
    ui.rule.appendChild(o);
  });
  ui.draws.textContent = D === DATA.draws_total
    ? "Every one of the pricing stage's " + D + " draws is in this page: the proposal reproduces scenarios.csv."
    : "Thinned to the first " + D + " of the pricing stage's " + DATA.draws_total + " draws to keep this file small: numbers match `wtp simulate` on this run, and differ from scenarios.csv by simulation noise only.";

  var proposalCache = {};
  function proposalResult(rule) {
    if (!proposalCache[rule]) proposalCache[rule] = simulate(PROPOSAL, rule, DATA.seed);
    return proposalCache[rule];
  }

  function current() { return BOOKS[ui.book.value]; }

  function renderEditor() {
    var book = current();
    clear(ui.editor);
    var head = el("tr"); ["Package", "Price", "Proposed", "Tested?"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    ui.editor.appendChild(head);
    var prop = PROPOSAL[ui.book.value];
    book.tiers.forEach(function (t, k) {
      var tr = el("tr");
      cell(tr, t);
      var td = el("td");
      var inp = el("input", { type: "number", min: "0", step: "any", id: "price-" + k, "aria-label": "Price of " + t });
      inp.value = isFinite(book.prices[k]) ? String(book.prices[k]) : "";
      inp.addEventListener("change", function () { var v = inp.value === "" ? NaN : Number(inp.value); book.prices[k] = v >= 0 ? v : NaN; update(); });
      td.appendChild(inp); tr.appendChild(td);
      cell(tr, money(prop.prices[k], PRICE_DIGITS));
      cell(tr, "", { id: "mark-" + k, "class": "mark" });
      ui.editor.appendChild(tr);
    });
    clear(ui.features);
    var fh = el("tr"); fh.appendChild(el("th", null, "Feature")); fh.appendChild(el("th", null, "From package")); fh.appendChild(el("th", null, "Proposed"));
    ui.features.appendChild(fh);
    for (var f = 0; f < F; f++) (function (f) {
      var tr = el("tr");
      cell(tr, label(f));
      var td = el("td"), sel = el("select", { "data-feature": DATA.features[f], "aria-label": "Lowest package with " + label(f) });
      sel.appendChild(el("option", { value: "-1" }, "not in the book"));
      book.tiers.forEach(function (t, k) { sel.appendChild(el("option", { value: String(k) }, t)); });
      sel.value = String(book.lowest[f]);
      sel.addEventListener("change", function () { book.lowest[f] = Number(sel.value); update(); });
      td.appendChild(sel); tr.appendChild(td);
      cell(tr, prop.lowest[f] >= 0 ? prop.tiers[prop.lowest[f]] : "not in the book");
      ui.features.appendChild(tr);
    })(f);
    renderAddOnEditor(book, prop);
  }

  function renderAddOnEditor(book, prop) {
    var table = document.getElementById("addons-editor");
    if (!table) return;
    clear(table);
    var head = el("tr"); ["Add-on", "Price", "Proposed"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    table.appendChild(head);
    book.addOns.forEach(function (a, n) {
      var tr = el("tr");
      cell(tr, label(a.f));
      var td = el("td"), inp = el("input", { type: "number", min: "0", step: "any", id: "addon-price-" + DATA.features[a.f], "aria-label": "Price of the add-on " + label(a.f) });
      inp.value = isFinite(a.price) ? String(a.price) : "";
      inp.addEventListener("change", function () { var v = inp.value === "" ? NaN : Number(inp.value); a.price = v >= 0 ? v : NaN; update(); });
      td.appendChild(inp); tr.appendChild(td);
      var p = prop.addOns[n];
      cell(tr, book.lowest[a.f] >= 0 ? "in " + book.tiers[book.lowest[a.f]] + ": not an add-on" : (p ? money(p.price, 2) : "–"));
      table.appendChild(tr);
    });
    if (!book.addOns.length) { var none = el("tr"); cell(none, "This book has no add-ons."); table.appendChild(none); }
  }

  function renderAddOns(book, res) {
    var node = document.getElementById("addons");
    if (!node) return;
    clear(node);
    ["single", "multiple"].forEach(function (sc) {
      var tot = 0;
      res[sc].segments.forEach(function (r) { tot += r.addOnRevenue; });
      node.appendChild(el("p", null, (sc === "single" ? "One book for all" : "One book per segment") + ": add-on revenue ")).appendChild(el("span", { id: "addon-total-" + sc }, money(tot)));
    });
    res[book.scenario].segments.forEach(function (row) {
      if (row.book !== book.name || !row.addOns.length) return;
      var t = el("table", { "class": "addons", "data-segment": row.segment });
      var head = el("tr");
      [row.segment + ": add-on", "Price", "Take-up", "Customers", "Revenue", "90% interval"].forEach(function (h) { head.appendChild(el("th", null, h)); });
      t.appendChild(head);
      row.addOns.forEach(function (x) {
        var tr = el("tr");
        cell(tr, label(DATA.features.indexOf(x.feature))); cell(tr, money(x.price, 2)); cell(tr, share(x.share)); cell(tr, money(x.customers));
        cell(tr, money(x.revenue), { "data-addon": book.scenario + ":" + row.segment + ":" + x.feature }); cell(tr, money(x.revenueInt[0]) + " – " + money(x.revenueInt[1]));
        t.appendChild(tr);
      });
      node.appendChild(t);
    });
  }

  function renderMarks(book) {
    var ms = marks(book);
    book.tiers.forEach(function (t, k) {
      var m = ms.filter(function (x) { return x.tier === k && x.feature === null; });
      var node = document.getElementById("mark-" + k);
      node.textContent = m.length ? "⚠ " + pct(m[0].outside) + " outside" : "within";
      node.className = m.length ? "mark outside" : "mark";
    });
    clear(ui.marks);
    ms.forEach(function (m) { ui.marks.appendChild(el("div", { "class": "warn extrapolated" }, m.text)); });
  }

  function renderTakeUp(book, res, prop) {
    clear(ui.takeup);
    var scenario = book.scenario;
    res[scenario].segments.forEach(function (row) {
      if (row.book !== book.name) return;
      var p = prop[scenario].segments.filter(function (r) { return r.segment === row.segment; })[0];
      ui.takeup.appendChild(el("h4", null, row.segment));
      var t = el("table", { "class": "takeup", "data-segment": row.segment });
      var head = el("tr");
      ["Package", "Price", "Take-up", "90% interval", "Customers", "Revenue", "90% interval", "Proposal take-up", "Proposal revenue"].forEach(function (h) { head.appendChild(el("th", null, h)); });
      t.appendChild(head);
      row.tiers.forEach(function (x, k) {
        var tr = el("tr"), q = p ? p.tiers.filter(function (y) { return y.tier === x.tier; })[0] : null;
        cell(tr, x.tier); cell(tr, money(x.price, PRICE_DIGITS)); cell(tr, share(x.share)); cell(tr, share(x.shareInt[0]) + " – " + share(x.shareInt[1]));
        cell(tr, money(x.customers)); cell(tr, money(x.revenue)); cell(tr, money(x.revenueInt[0]) + " – " + money(x.revenueInt[1]));
        cell(tr, q ? share(q.share) : "–"); cell(tr, q ? money(q.revenue) : "–");
        t.appendChild(tr);
      });
      ui.takeup.appendChild(t);
    });
  }

  function renderTotals(res, prop) {
    clear(ui.totals);
    var head = el("tr");
    ["Segment", "Single: customers", "Single: revenue", "90% interval", "Proposal", "Multiple: customers", "Multiple: revenue", "90% interval", "Proposal"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    ui.totals.appendChild(head);
    var names = res.single.segments.map(function (r) { return r.segment; });
    names.concat(["total"]).forEach(function (name) {
      var tr = el("tr", name === "total" ? { "class": "total" } : null);
      cell(tr, name);
      ["single", "multiple"].forEach(function (sc) {
        var pick = function (r) { return name === "total" ? r[sc].total : r[sc].segments.filter(function (x) { return x.segment === name; })[0]; };
        var a = pick(res), b = pick(prop);
        var id = name === "total" ? { id: "total-" + sc } : { "data-revenue": sc + ":" + name };
        cell(tr, a ? money(a.customers) : "–");
        cell(tr, a ? money(a.revenue) : "–", id);
        cell(tr, a ? money(a.revenueInt[0]) + " – " + money(a.revenueInt[1]) : "–");
        cell(tr, b ? money(b.revenue) : "–", name === "total" ? { id: "proposal-total-" + sc } : null);
      });
      ui.totals.appendChild(tr);
    });
  }

  // the segments offered `book`: in the single scenario every segment is offered the single book
  function servedBy(book) {
    return SEGS.filter(function (s) { return isFinite(s.prospects) && (book.scenario === "single" || s.name === book.name); });
  }

  // revenue of the segments offered `book` as one tier's price moves, the others held
  function sweep(book, k, rule) {
    var segs = servedBy(book);
    var n = segs.reduce(function (a, s) { return a + s.n; }, 0);
    var draws = Math.max(1, Math.min(D, Math.ceil(150000 / Math.max(n * book.tiers.length, 1))));
    var p0 = isFinite(book.prices[k]) ? book.prices[k] : PROPOSAL[key(book.scenario, book.name)].prices[k];
    if (!isFinite(p0) || p0 <= 0) return null;
    var xs = [], ys = [];
    for (var j = 0; j <= 20; j++) {
      var p = p0 * (0.4 + 1.2 * j / 20), b = copyBook(book);
      b.prices[k] = p;
      var r = 0;
      segs.forEach(function (s) { r += mean(evaluate(s, b, rule, DATA.seed, draws).revenue); });
      xs.push(p); ys.push(r);
    }
    var range = null;
    segs.forEach(function (s) { var t = testedRange(s, book, k); if (t) range = range ? [Math.min(range[0], t[0]), Math.max(range[1], t[1])] : t; });
    return { xs: xs, ys: ys, p0: p0, draws: draws, range: range };
  }

  // add-on revenue of the segments offered `book` as one add-on's price moves, the tiers and the
  // other add-ons held: who takes which package does not depend on it, so it is found once
  function addOnSweep(book, a, rule) {
    var segs = servedBy(book);
    var was = PROPOSAL[key(book.scenario, book.name)].addOns.filter(function (x) { return x.f === a.f; })[0];
    var p0 = isFinite(a.price) ? a.price : (was ? was.price : NaN);
    if (!isFinite(p0) || p0 <= 0) return null;
    var outs = segs.map(function (s) { return evaluate(s, book, rule, DATA.seed, D); });
    var xs = [], ys = [];
    for (var j = 0; j <= 20; j++) {
      var p = p0 * (0.4 + 1.2 * j / 20), r = 0;
      segs.forEach(function (s, i) { r += s.prospects * s.seats * mean(addOnShares(s, book, outs[i], a.f, p)) * p; });
      xs.push(p); ys.push(r);
    }
    return { xs: xs, ys: ys, p0: p0, draws: D, range: null };
  }

  function chart(data, title) {
    var w = 300, h = 150, l = 52, r = 8, t = 18, b = 28;
    var svg = document.createElementNS(SVGNS, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h); svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("role", "img");
    var x0 = data.xs[0], x1 = data.xs[data.xs.length - 1], y1 = Math.max.apply(null, data.ys) || 1;
    function X(v) { return l + (w - l - r) * (v - x0) / (x1 - x0); }
    function Y(v) { return h - b - (h - b - t) * v / y1; }
    function add(tag, attrs, text) { var e = document.createElementNS(SVGNS, tag); Object.keys(attrs).forEach(function (a) { e.setAttribute(a, attrs[a]); }); if (text) e.textContent = text; svg.appendChild(e); return e; }
    if (data.range) {
      var a = Math.max(x0, data.range[0]), z = Math.min(x1, data.range[1]);
      if (z > a) add("rect", { x: X(a), y: t, width: X(z) - X(a), height: h - b - t, fill: "#e8f0e8" });
    }
    add("line", { x1: l, x2: w - r, y1: h - b, y2: h - b, stroke: "#888" });
    add("line", { x1: l, x2: l, y1: t, y2: h - b, stroke: "#888" });
    add("polyline", { points: data.xs.map(function (x, i) { return X(x).toFixed(1) + "," + Y(data.ys[i]).toFixed(1); }).join(" "), fill: "none", stroke: "#1f5f9f", "stroke-width": 2 });
    add("line", { x1: X(data.p0), x2: X(data.p0), y1: t, y2: h - b, stroke: "#c0392b", "stroke-dasharray": "3,2" });
    add("text", { x: l, y: 12, "font-size": 11 }, title);
    add("text", { x: l - 4, y: t + 4, "font-size": 9, "text-anchor": "end" }, money(y1));
    add("text", { x: l - 4, y: h - b, "font-size": 9, "text-anchor": "end" }, "0");
    add("text", { x: l, y: h - 10, "font-size": 9 }, money(x0, PRICE_DIGITS));
    add("text", { x: w - r, y: h - 10, "font-size": 9, "text-anchor": "end" }, money(x1, PRICE_DIGITS));
    add("text", { x: X(data.p0), y: h - 2, "font-size": 9, "text-anchor": "middle" }, money(data.p0, PRICE_DIGITS));
    return svg;
  }

  var sweepToken = 0;
  function renderSweeps(book, rule) {
    var token = ++sweepToken;
    clear(ui.sweeps);
    var k = 0, addOns = offeredAddOns(book), K = book.tiers.length;
    function next() { // one tier or add-on per tick, so editing stays responsive
      if (token !== sweepToken || k >= K + addOns.length) return;
      var fig;
      if (k < K) {
        var s = sweep(book, k, rule);
        fig = el("figure", { "class": "sweep" });
        if (s) {
          fig.appendChild(chart(s, book.tiers[k] + ": revenue as its price moves"));
          fig.appendChild(el("figcaption", null, "Other prices held; " + (s.draws < D ? "mean of the first " + s.draws + " draws" : "every draw") + "; shaded: tested prices; dashed: the price now."));
        } else fig.appendChild(el("figcaption", null, book.tiers[k] + ": not priced"));
      } else {
        var a = addOns[k - K], f = DATA.features[a.f], t = addOnSweep(book, a, rule);
        fig = el("figure", { "class": "sweep", "data-addon-sweep": f });
        if (t) {
          fig.setAttribute("data-at-price", String(t.ys[10]));
          fig.appendChild(chart(t, label(a.f) + " (add-on)"));
          fig.appendChild(el("figcaption", null, "The add-on's revenue as its price moves; packages and other add-ons held; every draw; dashed: the price now."));
        } else fig.appendChild(el("figcaption", null, label(a.f) + " (add-on): not priced"));
      }
      ui.sweeps.appendChild(fig);
      k += 1;
      setTimeout(next, 0);
    }
    setTimeout(next, 0);
  }

  function exportRows() {
    var lines = ["scenario,segment,package,feature,price"];
    function q(v) { v = String(v); return /[",\n\r]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }
    bookKeys.forEach(function (kk) {
      var b = BOOKS[kk];
      b.tiers.forEach(function (t, k) {
        var price = isFinite(b.prices[k]) ? String(b.prices[k]) : "";
        var added = DATA.features.filter(function (f, j) { return b.lowest[j] === k; });
        (added.length ? added : [""]).forEach(function (f) { lines.push([b.scenario, b.name, t, f, price].map(q).join(",")); });
      });
      offeredAddOns(b).forEach(function (a) { lines.push([b.scenario, b.name, "add-on", DATA.features[a.f], isFinite(a.price) ? String(a.price) : ""].map(q).join(",")); });
    });
    return lines.join("\n") + "\n";
  }

  function update() {
    var t0 = performance.now();
    var book = current(), rule = ui.rule.value;
    var res = simulate(BOOKS, rule, DATA.seed), prop = proposalResult(rule);
    renderMarks(book);
    renderTakeUp(book, res, prop);
    renderTotals(res, prop);
    renderAddOns(book, res);
    ui.exportText.value = exportRows();
    var ms = performance.now() - t0;
    ui.timing.textContent = "Recomputed in " + ms.toFixed(0) + " ms.";
    ui.timing.setAttribute("data-ms", ms.toFixed(1));
    renderSweeps(book, rule);
  }

  ui.book.addEventListener("change", function () { renderEditor(); update(); });
  ui.rule.addEventListener("change", update);
  document.getElementById("reset-book").addEventListener("click", function () { BOOKS[ui.book.value] = copyBook(PROPOSAL[ui.book.value]); renderEditor(); update(); });
  document.getElementById("reset-all").addEventListener("click", function () { resetAll(); renderEditor(); update(); });
  document.getElementById("export").addEventListener("click", function () {
    var text = exportRows();
    ui.exportText.value = text;
    var a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: "scenario.csv" });
    document.body.appendChild(a); a.click(); document.body.removeChild(a);
  });
  renderEditor();
  update();
  document.body.setAttribute("data-ready", "1");
})();
