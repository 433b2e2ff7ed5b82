// sfpd.js -- the live page: polls sfpd's JSON API and plots, with uPlot,
// each layer's exponent and mantissa widths, the footprint and the loss
// over steps. Only new points are fetched (since=the newest step held;
// the server resends that step, whose point may have gained ranks since).
// After each redraw it writes what every chart holds into
// <script type="application/json" id="plotted"> (recordPlotted), which
// tests/system/sfpd.sh compares with the API in headless Chromium.
'use strict';
(function () {
	const POLL_MS = 2000;
	const MAX_POINTS = 20000; // per series in the page; halved when exceeded
	const $ = (id) => document.getElementById(id);

	let job = null;       // the job shown
	let pinned = false;   // chosen in the menu (else: follow the newest job)
	let jobData = null;   // {step:[], loss:[], footprint_bits_per_value:[]}
	let widths = {};      // layer -> kind -> {step:[], e:[], m:[], n_e:[], n_m:[]}
	let layerOrder = [];
	let charts = {};      // id -> uPlot
	let lastJobStep = -1, lastWidthStep = -1;

	const JOB_KEYS = ['step', 'loss', 'footprint_bits_per_value', 'raw_bytes_total', 'wire_bytes_total'];
	const WIDTH_KEYS = ['step', 'e', 'm', 'n_e', 'n_m'];

	function num(v, digits) {
		if (v === null || v === undefined) return '–';
		return Math.abs(v) >= 1e5 ? v.toExponential(2) : v.toFixed(digits);
	}

	function bytes(v) {
		if (v === null || v === undefined) return '–';
		const u = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
		let i = 0;
		while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
		return v.toFixed(i ? 1 : 0) + ' ' + u[i];
	}

	function setStatus(text, bad) {
		const s = $('status');
		s.textContent = text;
		s.className = bad ? 'status bad' : 'status';
	}

	// Points of `inc` replace those of `t` from inc's first step on.
	function merge(t, inc, keys) {
		if (!inc.step || !inc.step.length) return;
		let cut = t.step.length;
		while (cut > 0 && t.step[cut - 1] >= inc.step[0]) cut--;
		for (const k of keys) t[k] = t[k].slice(0, cut).concat(inc[k]);
		const n = t.step.length;
		if (n > MAX_POINTS)
			for (const k of keys) t[k] = t[k].filter((_, i) => i % 2 === 0 || i === n - 1);
	}

	function empty(keys) {
		const o = {};
		for (const k of keys) o[k] = [];
		return o;
	}

	async function getJSON(url) {
		const r = await fetch(url, {cache: 'no-store'});
		if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
		return r.json();
	}

	function reset(name) {
		job = name;
		jobData = empty(JOB_KEYS);
		widths = {};
		layerOrder = [];
		lastJobStep = lastWidthStep = -1;
		for (const id in charts) charts[id].destroy();
		charts = {};
		$('layers').textContent = '';
	}

	function stepped() {
		return uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({align: 1}) : undefined;
	}

	function chartWidth(el) {
		return Math.max(300, el.clientWidth - 4);
	}

	// series: uPlot's options per y series; keys: where each comes from in
	// the API ({source, key} and, for widths, {layer, kind}), same order.
	function makeChart(id, el, yLabel, series, keys, yRange) {
		const opts = {
			width: chartWidth(el),
			height: 220,
			scales: {x: {time: false}, y: yRange ? {range: yRange} : {}},
			axes: [{label: 'step'}, {label: yLabel}],
			series: [{label: 'step'}].concat(series),
			legend: {live: true},
		};
		const data = [[]].concat(series.map(() => []));
		charts[id] = new uPlot(opts, data, el);
		charts[id].sfpdEl = el;
		charts[id].sfpdKeys = keys;
		return charts[id];
	}

	function jobCharts() {
		if (!charts.loss)
			makeChart('loss', $('c-loss'), 'loss', [{label: 'loss', stroke: '#c0392b', width: 2, spanGaps: true}],
				[{source: 'job', key: 'loss'}]);
		if (!charts.fp)
			makeChart('fp', $('c-fp'), 'bits / value',
				[{label: 'footprint', stroke: '#2c7bb6', width: 2, spanGaps: true}],
				[{source: 'job', key: 'footprint_bits_per_value'}], [0, 33]);
		charts.loss.setData([jobData.step, jobData.loss]);
		charts.fp.setData([jobData.step, jobData.footprint_bits_per_value]);
	}

	const KIND_STYLE = {
		weights: {e: '#1b9e77', m: '#d95f02'},
		activations: {e: '#7570b3', m: '#e7298a'},
	};

	// The kinds of one layer on one x axis: the union of their steps.
	function layerData(kinds) {
		const steps = Array.from(new Set(kinds.flatMap((k) => widths[k.layer][k.kind].step))).sort((a, b) => a - b);
		const index = new Map(steps.map((s, i) => [s, i]));
		const cols = [steps];
		for (const k of kinds) {
			const d = widths[k.layer][k.kind];
			for (const key of ['e', 'm', 'n_e', 'n_m']) {
				const col = new Array(steps.length).fill(null);
				d.step.forEach((s, i) => { col[index.get(s)] = d[key][i]; });
				cols.push(col);
			}
		}
		return cols;
	}

	function layerChart(layer) {
		const kinds = Object.keys(widths[layer]).sort().reverse().map((kind) => ({layer, kind}));
		const id = 'layer:' + layer + ':' + kinds.map((k) => k.kind).join(',');
		if (!charts[id]) {
			for (const old in charts)
				if (old.startsWith('layer:' + layer + ':')) { charts[old].sfpdEl.parentNode.remove(); charts[old].destroy(); delete charts[old]; }
			const fig = document.createElement('figure');
			const cap = document.createElement('figcaption');
			cap.textContent = layer + ' (' + kinds.map((k) => k.kind).join(', ') + ')';
			const el = document.createElement('div');
			el.className = 'chart';
			fig.append(cap, el);
			$('layers').append(fig);
			const series = [], keys = [];
			for (const k of kinds) {
				const st = KIND_STYLE[k.kind] || {e: '#444', m: '#888'};
				const w = k.kind === 'weights' ? 'w' : 'a';
				series.push({label: 'e ' + w, stroke: st.e, width: 2, paths: stepped(), spanGaps: true});
				series.push({label: 'm ' + w, stroke: st.m, width: 2, paths: stepped(), spanGaps: true});
				series.push({label: 'nₑ ' + w, stroke: st.e, width: 1, dash: [4, 3], spanGaps: true});
				series.push({label: 'nₘ ' + w, stroke: st.m, width: 1, dash: [4, 3], spanGaps: true});
				for (const key of ['e', 'm', 'n_e', 'n_m'])
					keys.push({source: 'bitlengths', layer, kind: k.kind, key});
			}
			makeChart(id, el, 'bits', series, keys, [0, 24]);
		}
		charts[id].setData(layerData(kinds));
	}

	// What the charts hold, read back from uPlot: per series the points
	// plotted (values that are not null), the last (step, value) and the sum
	// of the values. '<' is escaped so the JSON cannot end its element.
	function recordPlotted() {
		const out = {job, charts: []};
		for (const id of Object.keys(charts).sort()) {
			const u = charts[id], xs = u.data[0];
			const series = u.sfpdKeys.map((meta, i) => {
				let n = 0, sum = 0, last = null;
				u.data[i + 1].forEach((y, k) => {
					if (y === null || y === undefined) return;
					n++;
					sum += y;
					last = [xs[k], y];
				});
				return Object.assign({n, sum, last}, meta);
			});
			out.charts.push({chart: id, series});
		}
		$('plotted').textContent = JSON.stringify(out).replace(/</g, '\\u003c');
	}

	function summary(j) {
		$('s-step').textContent = j.step === null ? '–' : j.step;
		$('s-loss').textContent = num(j.loss, 4);
		$('s-fp').textContent = j.footprint_bits_per_value === null ? '–'
			: num(j.footprint_bits_per_value, 2) + ' bits (' + num(32 / j.footprint_bits_per_value, 2) + 'x smaller)';
		$('s-workers').textContent = j.workers.up + ' of ' + j.workers.total;
		$('s-wire').textContent = bytes(j.wire_bytes_total) + ' of ' + bytes(j.raw_bytes_total) +
			(j.wire_bytes_total ? ' (' + num(j.raw_bytes_total / j.wire_bytes_total, 2) + 'x)' : '');
		const drops = Object.values(j.drops).reduce((a, b) => a + b, 0);
		$('s-drops').textContent = drops;
		$('s-drops').title = Object.entries(j.drops).map(([k, v]) => k + ': ' + v).join(', ');
		$('banner').hidden = j.job !== 'simulation';
		const sel = $('job');
		const names = j.jobs.join('\n');
		if (sel.dataset.names !== names) {
			sel.textContent = '';
			for (const name of j.jobs) sel.append(new Option(name, name));
			sel.dataset.names = names;
		}
		sel.value = j.job;
	}

	function workersTable(w) {
		const body = $('workers').tBodies[0];
		body.textContent = '';
		for (const x of w.workers) {
			const tr = body.insertRow();
			const cells = [x.rank, x.replica, x.stage, x.state, x.step === null ? '–' : x.step, num(x.loss, 4),
				x.reports, x.last_seen_seconds_ago === null ? '–' : num(x.last_seen_seconds_ago, 1) + ' s ago',
				x.samples_total, bytes(x.wire_bytes_total) + ' / ' + bytes(x.raw_bytes_total)];
			cells.forEach((c, i) => {
				const td = tr.insertCell();
				td.textContent = c;
				if (i === 3) td.className = x.state;
			});
		}
	}

	async function poll() {
		try {
			const q = pinned && job ? 'job=' + encodeURIComponent(job) + '&' : '';
			const j = await getJSON('/api/v1/job?' + q + 'since=' + Math.max(0, lastJobStep));
			if (j.job === null) {
				setStatus('waiting for workers');
				return;
			}
			if (j.job !== job || (j.step !== null && j.step < lastJobStep)) {
				reset(j.job); // another job, or this one started over
				return poll();
			}
			merge(jobData, j.series, JOB_KEYS);
			if (jobData.step.length) lastJobStep = jobData.step[jobData.step.length - 1];
			summary(j);
			jobCharts();
			const jq = 'job=' + encodeURIComponent(job);
			const b = await getJSON('/api/v1/bitlengths?' + jq + '&since=' + Math.max(0, lastWidthStep));
			let newest = lastWidthStep;
			const touched = new Set();
			for (const t of b.layers) {
				widths[t.layer] = widths[t.layer] || {};
				widths[t.layer][t.kind] = widths[t.layer][t.kind] || empty(WIDTH_KEYS);
				merge(widths[t.layer][t.kind], t.series, WIDTH_KEYS);
				const s = widths[t.layer][t.kind].step;
				if (s.length) newest = Math.max(newest, s[s.length - 1]);
				touched.add(t.layer);
			}
			// a kind with no new point keeps the older `since`: take the smallest newest
			lastWidthStep = Object.values(widths).flatMap((k) => Object.values(k))
				.reduce((m, d) => Math.min(m, d.step.length ? d.step[d.step.length - 1] : -1), newest);
			layerOrder = j.layers.map((l) => l.layer).filter((l) => widths[l]);
			for (const layer of layerOrder) if (touched.has(layer)) layerChart(layer);
			recordPlotted();
			workersTable(await getJSON('/api/v1/workers?' + jq));
			setStatus('live · updated ' + new Date().toLocaleTimeString());
		} catch (e) {
			setStatus('sfpd unreachable (' + e.message + '), retrying', true);
		} finally {
			if (!poll.pending) {
				poll.pending = true;
				setTimeout(() => { poll.pending = false; poll(); }, POLL_MS);
			}
		}
	}

	$('job').addEventListener('change', (e) => {
		pinned = true;
		reset(e.target.value);
		poll();
	});
	window.addEventListener('resize', () => {
		for (const id in charts) charts[id].setSize({width: chartWidth(charts[id].sfpdEl), height: 220});
	});
	reset(null);
	poll();
})();
