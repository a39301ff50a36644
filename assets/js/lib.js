// One place that names the vendored UI libraries, so upgrading a pinned
// version (scripts/vendor.sh) touches only this file and markdown.js.
import { h, render, Component, Fragment, createContext, createRef, options } from '../vendor/preact@10.29.8/preact.mjs';
import {
  useState, useEffect, useLayoutEffect, useRef, useMemo, useCallback, useContext, useReducer,
} from '../vendor/preact@10.29.8/hooks.mjs';
import htm from '../vendor/htm@3.1.1/htm.mjs';

export const html = htm.bind(h);
export {
  h, render, Component, Fragment, createContext, createRef, options,
  useState, useEffect, useLayoutEffect, useRef, useMemo, useCallback, useContext, useReducer,
};
